// The TypeScript declarations compile, and allow and refuse what they should (test/usage.ts).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const here = fileURLToPath(new URL('.', import.meta.url));
const tsc = fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url));

test('procwire.d.ts type-checks the documented uses under --strict', () => {
  const args = ['--noEmit', '--strict', '--target', 'es2022', '--module', 'es2022', '--moduleResolution', 'bundler'];
  const output = execFileSync(process.execPath, [tsc, ...args, '--lib', 'es2022,dom', 'usage.ts'], {
    cwd: here,
    encoding: 'utf8',
    timeout: 60000,
  });
  assert.equal(output, '');
});
