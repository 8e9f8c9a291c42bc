// Compiled (never run) by types.test.js: the declarations in procwire.d.ts allow the README's uses
// and refuse wrong ones (each @ts-expect-error must be an error).

import {
  Client, ConnectionError, NotFound, OutputTruncated, ProcessLost, RpcError,
  type AttachMode, type Chunk, type ExitStatus, type Hello, type ShareAnswer, type SizeRule,
} from '../procwire.js';

export async function uses(WebSocket: new (url: string) => unknown): Promise<void> {
  const client = await Client.connect('ws://127.0.0.1:9999/ws', 'token', {
    WebSocket,
    auth: 'header',
    reconnect: { first: 100, max: 1000, deadline: 5000 },
    onReconnect: (hello: Hello) => hello.client_id,
    onError: (error) => error.code,
  });
  const result = await client.run(['sh', '-c', 'exit 3'], { input: new Uint8Array([1]), max_output: 10 });
  const stdout: Uint8Array = result.stdout;
  const status: number | null = result.code;
  const cat = await client.start(['cat'], { binary: true, on_disconnect: 'keep', pty: { rows: 24, cols: 80 } });
  for await (const chunk of cat) {
    const { stream, data, offset }: Chunk = chunk;
    void [stream, data.byteLength, offset + 1];
  }
  await cat.write('text');
  await cat.write(stdout);
  cat.send(new Uint8Array([0]));
  const { size } = await cat.resize(40, 120);
  void [size.rows, size.cols];
  const link: ShareAnswer = await cat.share({ mode: 'view', expires_in: 600 });
  await client.unshare((await client.share(cat.proc, { single_use: true })).id);
  const viewer = await Client.connect(link.url, null);
  const watched = await viewer.attach(cat.proc, { mode: 'view', snapshot: true });
  const mode: AttachMode | null = watched.mode;
  void [mode, watched.info?.mode, viewer.hello?.identity.share?.proc, link.expires_at];
  await client.start(['sh'], { pty: { rows: 24, cols: 80 }, size_rule: 'smallest' });
  const rule: SizeRule | null | undefined = (await client.list())[0]?.size_rule;
  void rule;
  await cat.signal('INT', { group: false });
  const exit: ExitStatus = await cat.exit;
  cat.on('screen', (params) => params.rows).on('exit', (done) => done.signal);
  const attached = await client.attach(exit.proc, { offset: { stdout: 4 }, snapshot: true, binary: false });
  void [attached.screen?.data, attached.info?.replay_from.stdout, status];
  try {
    await client.call('ping');
  } catch (error) {
    if (error instanceof RpcError) void [error.code, error.data, error.method];
    if (error instanceof ProcessLost) void error.proc;
    if (error instanceof ConnectionError) void [error.code, error.reason, error.status];
    if (error instanceof OutputTruncated) void error.result.stdout.byteLength;
    if (error instanceof NotFound) void error.data;
  }
  const { stdout: out } = await cat.communicate('input');
  await cat.write(out, { binary: true });
  const waited: ExitStatus = await client.wait(exit.proc, 0.5);
  void [waited.code, client.reconnects, cat.running, cat.stdinError?.code, await client.lookpath('sh')];
  // @ts-expect-error `on_overflow` is "raise" or "truncate"
  await client.run(['ls'], { on_overflow: 'drop' });
  // @ts-expect-error argv is an array of strings
  await client.start('ls');
  // @ts-expect-error no such stream
  void (await cat.exit).rusage.nothing;
  // @ts-expect-error `on_disconnect` is "kill" or "keep"
  await client.start(['ls'], { on_disconnect: 'detach' });
  // @ts-expect-error a share is for "view" or "control"
  await client.share(1, { mode: 'admin' });
  // @ts-expect-error `size_rule` is "latest" or "smallest"
  await client.start(['sh'], { size_rule: 'largest' });
  client.close();
}
