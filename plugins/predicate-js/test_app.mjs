// Native tests of the plugin's logic: `node --test test_app.mjs` (no WebAssembly).
//
// The host import `logistis:plugin/host` exists only inside the component; a module hook
// stands in for it and records the log lines, so the real exports are tested as they are.
import assert from 'node:assert/strict';
import { register } from 'node:module';
import { test } from 'node:test';

const hostStub = 'export function log(level, message) { globalThis.hostLog.push([level, message]); }';
const hooks = `
export async function resolve(specifier, context, next) {
  if (specifier.startsWith('logistis:plugin/host')) {
    return { url: 'data:text/javascript,' + ${JSON.stringify(encodeURIComponent(hostStub))}, shortCircuit: true };
  }
  return next(specifier, context);
}`;
register('data:text/javascript,' + encodeURIComponent(hooks));
globalThis.hostLog = [];
const { configure, evaluate } = await import('./app.js');

test('skips changes by the configured field managers only', () => {
  configure('{"fieldManagers": ["noisy-operator"]}');
  assert.equal(evaluate({ fieldManager: 'noisy-operator' }), 'skip');
  assert.equal(evaluate({ fieldManager: 'kubectl-client-side-apply' }), 'capture');
  // `option<string>` none arrives as undefined.
  assert.equal(evaluate({ fieldManager: undefined }), 'capture');
});

test('no config captures everything', () => {
  configure('null');
  assert.equal(evaluate({ fieldManager: 'noisy-operator' }), 'capture');
});

test('a bad config is rejected with a message', () => {
  assert.throws(() => configure('{"fieldManagers": [1]}'), /must be a list of strings/);
  assert.throws(() => configure('{"fieldManagers": "noisy-operator"}'), /must be a list of strings/);
});

test('configure logs through the host', () => {
  globalThis.hostLog = [];
  configure('{"fieldManagers": ["a", "b"]}');
  assert.deepEqual(globalThis.hostLog, [['info', 'configured: skip changes by a, b']]);
});
