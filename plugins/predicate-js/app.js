// A Logistis capture predicate written in JavaScript (jco / componentize-js).
//
// Skips changes made by the listed field managers (a noisy operator, for instance).
//
//   predicates:
//     - name: javascript
//       file: predicate_js.wasm
//       deadline-ms: 50
//       memory-mb: 128
//       config: {fieldManagers: ["noisy-operator"]}
//
// Build: npm install && npx jco componentize app.js --wit ../../wit --world-name predicate \
//          -d all -o predicate_js.wasm
import { log } from 'logistis:plugin/host@0.1.0';

let fieldManagers = [];

// Pure logic, kept apart from the exports.
function shouldSkip(managers, fieldManager) {
  return fieldManager != null && managers.includes(fieldManager);
}

function parseConfig(text) {
  const config = JSON.parse(text);
  if (config === null) return [];
  const managers = config.fieldManagers ?? [];
  if (!Array.isArray(managers) || managers.some((m) => typeof m !== 'string')) {
    throw new Error('config.fieldManagers must be a list of strings');
  }
  return managers;
}

export function configure(config) {
  // Throwing rejects the config: the host refuses the plugin set with this message.
  fieldManagers = parseConfig(config);
  log('info', `configured: skip changes by ${fieldManagers.join(', ') || 'nobody'}`);
}

export function evaluate(event) {
  return shouldSkip(fieldManagers, event.fieldManager) ? 'skip' : 'capture';
}
