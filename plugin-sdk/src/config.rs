//! The plugin's configuration: `config:` from `plugins.yaml`, handed over as JSON text.

use serde::de::DeserializeOwned;

/// Parse the config text into `T`; an absent config (`null` or empty) gives `T::default()`.
/// The error message names the offending field, as serde reports it, so the operator sees
/// it in the host's status.
pub fn parse<T: DeserializeOwned + Default>(text: &str) -> Result<T, String> {
    let text = text.trim();
    if text.is_empty() || text == "null" {
        return Ok(T::default());
    }
    serde_json::from_str(text).map_err(|error| format!("invalid config: {error}"))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[serde(default)]
        names: Vec<String>,
    }

    #[test]
    fn absent_config_is_default_and_unknown_fields_are_rejected() {
        assert_eq!(super::parse::<Config>("null").unwrap(), Config::default());
        assert_eq!(
            super::parse::<Config>(r#"{"names":["a"]}"#).unwrap().names,
            ["a"]
        );
        let error = super::parse::<Config>(r#"{"nmes":[]}"#).unwrap_err();
        assert!(error.contains("unknown field `nmes`"), "{error}");
    }
}
