// signalChild: a signal reaches a child that runs, and never a child whose spawn failed (Node hands libuv an
// unset process id there: 0 signalled the caller's whole process group).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { signalChild } from '../../src/util/signal-child';

test('a child whose spawn failed is not signalled: child.kill is never called, before or after its error', async () => {
  const children: ChildProcess[] = [];
  for (let i = 0; i < 2; i++) children.push(spawn('/nonexistent/semaim-no-such-program', [], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const calls: string[] = [];
  for (const c of children) {
    const kill = c.kill.bind(c);
    c.kill = (s?: NodeJS.Signals | number) => {
      calls.push(String(s));
      return kill(s);
    };
  }
  // the moment bench/distributed.ts met it: in the first child's 'error', the second has not had its own
  const errors = children.map((c) => once(c, 'error'));
  children[0].once('error', () => assert.equal(signalChild(children[1], 'SIGKILL'), false));
  assert.equal(signalChild(children[0], 'SIGKILL'), false, 'before its error');
  await Promise.all(errors);
  assert.equal(signalChild(children[1], 'SIGKILL'), false, 'after its error');
  assert.deepEqual(calls, []);
});

test('a running child gets the signal; one that ended is not signalled again', async () => {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  await once(child, 'spawn');
  const exited = once(child, 'exit');
  assert.equal(signalChild(child, 'SIGTERM'), true);
  assert.deepEqual(await exited, [null, 'SIGTERM']);
  const calls: string[] = [];
  child.kill = (s?: NodeJS.Signals | number) => (calls.push(String(s)), false);
  assert.equal(signalChild(child, 'SIGKILL'), false);
  assert.deepEqual(calls, []);
});
