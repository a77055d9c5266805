"""Native tests of the plugin's logic: `python3 -m unittest test_app` (no WebAssembly)."""

import sys
import types
import unittest

# The generated bindings exist only inside componentize-py; stub them for native tests.
for name in ["wit_world", "wit_world.imports", "componentize_py_types"]:
    sys.modules.setdefault(name, types.ModuleType(name))
sys.modules["wit_world"].WitWorld = object
sys.modules["componentize_py_types"].Err = Exception
sys.modules["wit_world.imports"].host = None
sys.modules["wit_world.imports"].types = None

import app  # noqa: E402


class ShouldSkip(unittest.TestCase):
    def test_annotation(self):
        annotated = '{"metadata":{"annotations":{"logistis.io/ignore":"true"}}}'
        self.assertTrue(app.should_skip("logistis.io/ignore", annotated))
        self.assertFalse(app.should_skip("logistis.io/ignore", '{"metadata":{}}'))
        self.assertFalse(app.should_skip("logistis.io/ignore", None))

    def test_config(self):
        self.assertEqual(app.parse_config("null"), app.DEFAULT_ANNOTATION)
        self.assertEqual(app.parse_config('{"annotation":"x"}'), "x")
        with self.assertRaises(ValueError):
            app.parse_config('{"other":1}')


if __name__ == "__main__":
    unittest.main()
