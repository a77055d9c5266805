//! When to colour and how. Colour is for people: `auto` colours only when stdout is a
//! terminal and `NO_COLOR` is unset or empty (<https://no-color.org>); `--color always|never`
//! overrides both, as the convention asks of command-line flags. Plain ANSI SGR codes, so no
//! terminal library is needed.

use crate::cli::ColorChoice;

/// Decides from the flag, whether stdout is a terminal and the value of `NO_COLOR`.
pub fn enabled(choice: ColorChoice, stdout_is_terminal: bool, no_color: Option<&str>) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => stdout_is_terminal && no_color.is_none_or(str::is_empty),
    }
}

/// The styles this program uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Added,
    Removed,
    Hunk,
    Header,
    /// Blame gutter of lines set by the newest version.
    Recent,
    /// Blame gutter of older lines.
    Dim,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Added => "32",
            Style::Removed => "31",
            Style::Hunk => "36",
            Style::Header => "1",
            Style::Recent => "33",
            Style::Dim => "2",
        }
    }
}

/// Paints text when colour is on; the identity otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Painter {
    pub enabled: bool,
}

impl Painter {
    pub fn paint(self, style: Style, text: &str) -> String {
        if self.enabled && !text.is_empty() {
            format!("\x1b[{}m{text}\x1b[0m", style.code())
        } else {
            text.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case(ColorChoice::Auto, true, None, true)]
    #[case(ColorChoice::Auto, true, Some(""), true)]
    #[case(ColorChoice::Auto, true, Some("1"), false)]
    #[case(ColorChoice::Auto, false, None, false)]
    #[case(ColorChoice::Always, false, Some("1"), true)]
    #[case(ColorChoice::Never, true, None, false)]
    fn colour_rules(
        #[case] choice: ColorChoice,
        #[case] terminal: bool,
        #[case] no_color: Option<&str>,
        #[case] expected: bool,
    ) {
        assert_eq!(enabled(choice, terminal, no_color), expected);
    }

    #[test]
    fn painter_wraps_only_when_enabled() {
        assert_eq!(
            Painter { enabled: true }.paint(Style::Added, "+a"),
            "\x1b[32m+a\x1b[0m"
        );
        assert_eq!(Painter { enabled: false }.paint(Style::Added, "+a"), "+a");
    }
}
