// Types of procwire.js, procwire's JavaScript client (docs/protocol.md has every method and field).

export type Stream = 'stdout' | 'stderr';
export type Encoding = 'text' | 'base64';
export type Signal = string | number;

/** What the server says first on every connection (docs/protocol.md §2). */
export interface Hello {
  server: 'procwire';
  version: string;
  protocol: number;
  client_id: string;
  node: string;
  /** A share link's connection: role "share", and the one process it may reach. */
  identity: { name: string; role: 'admin' | 'user' | 'share'; share?: { id: string; proc: number; mode: AttachMode } };
  limits: {
    max_message_bytes: number;
    max_stdin_chunk: number;
    max_procs: number;
    kill_grace: number;
    drain_timeout: number;
    ping_interval: number;
  };
}

/** An exit status: the `exit` notification, the answer of `wait` and `stop` (§8). */
export interface ExitStatus {
  proc: number;
  pid: number;
  code: number | null;
  signal: string | null;
  core_dumped: boolean;
  timed_out: boolean;
  duration: number;
  output_incomplete: boolean;
  rusage: { utime: number; stime: number; maxrss_kb: number };
  lost?: true;
  node?: string;
}

/** One piece of output: its bytes and the offset of the first one in its stream.  After a
 * snapshot attach, the first is the screen (stream "screen": ANSI repainting it whole). */
export interface Chunk {
  stream: Stream | 'screen';
  data: Uint8Array;
  offset: number;
}

/** An `output` notification as the onNotification hook receives it (offset null: unknown). */
export interface OutputParams {
  proc: number;
  stream: Stream;
  offset: number | null;
  data: Uint8Array;
}

export interface ScreenParams {
  proc: number;
  data: string;
  offset: number;
  rows: number;
  cols: number;
}

export interface ProcessInfo {
  proc: number;
  pid: number;
  pgid: number;
  name: string | null;
  argv: string[];
  command: string;
  cwd: string;
  state: 'running' | 'exited';
  started_at: number;
  exit: ExitStatus | null;
  pty: boolean;
  size: { rows: number; cols: number } | null;
  /** On a pty, how its size is chosen among its controllers; else null. */
  size_rule: SizeRule | null;
  on_disconnect: 'kill' | 'keep';
  attached: number;
  /** Who is attached (the owner sees it). */
  viewers?: Viewer[];
  owner: string;
  offsets: Partial<Record<Stream, number>>;
  node: string;
  /** Its recording's id (§10, Recording), or null. */
  recording: string | null;
}

export type AttachMode = 'control' | 'view';
export type SizeRule = 'latest' | 'smallest';

export interface Viewer {
  client: string;
  name: string;
  mode: AttachMode;
}

export interface AttachAnswer {
  proc: number;
  mode?: AttachMode;
  offsets: Partial<Record<Stream, number>>;
  replay_from: Partial<Record<Stream, number>>;
  truncated: boolean;
  state: 'running' | 'exited';
  exit: ExitStatus | null;
  screen?: boolean;
}

/** The params of `start` other than `argv` (§6, start). */
export interface StartOptions {
  env?: Record<string, string | null>;
  clear_env?: boolean;
  cwd?: string | null;
  stdin?: 'pipe' | 'null';
  stderr?: 'pipe' | 'stdout' | 'null';
  timeout?: number | null;
  encoding?: Encoding;
  binary?: boolean;
  name?: string | null;
  command?: string | null;
  pty?: { rows: number; cols: number } | null;
  on_disconnect?: 'kill' | 'keep';
  /** With `pty`: the size when several connections control it ("latest" by default). */
  size_rule?: SizeRule;
  buffer?: number | null;
  /** Record the session on the server; `{ input: true }`: stdin too (§10, Recording). */
  record?: boolean | { input?: boolean } | null;
}

export interface RunOptions {
  env?: Record<string, string | null>;
  clear_env?: boolean;
  cwd?: string | null;
  stdin?: 'pipe' | 'null';
  stderr?: 'pipe' | 'stdout' | 'null';
  timeout?: number | null;
  encoding?: Encoding;
  name?: string | null;
  /** Bytes for stdin: a string as its UTF-8 bytes, bytes as they are. */
  input?: string | Uint8Array | null;
  /** Bytes kept per stream (the server's default: 16 MiB). */
  max_output?: number;
  /** Past `max_output`: "raise" (default) rejects with OutputTruncated, "truncate" resolves. */
  on_overflow?: 'raise' | 'truncate';
}

export interface RunResult extends ExitStatus {
  stdout: Uint8Array;
  stderr: Uint8Array;
  encoding: Encoding;
  truncated: Record<Stream, boolean>;
}

export interface AttachOptions {
  /** A number is the stdout offset; default 0. */
  offset?: number | Partial<Record<Stream, number>> | null;
  binary?: boolean | null;
  encoding?: Encoding | null;
  snapshot?: boolean;
  /** "view": output only, every method that acts on the process refused (-32003). */
  mode?: AttachMode;
}

/** The params of `share` other than `proc`. */
export interface ShareOptions {
  mode?: AttachMode;
  /** Seconds, default 3600, at most 7 days. */
  expires_in?: number;
  single_use?: boolean;
}

export interface ShareAnswer {
  id: string;
  token: string;
  /** ws://HOST/ws?share=TOKEN: connect with `new Client(url, null)`. */
  url: string;
  mode: AttachMode;
  expires_at: number;
}

export interface ResizeAnswer {
  /** The size the terminal took (under "smallest", maybe less than asked). */
  size: { rows: number; cols: number };
}

export interface ReconnectPolicy {
  /** First wait in ms (default 500), doubling up to `max` (10000), each ±20 %. */
  first?: number;
  max?: number;
  /** Give up this many ms after the loss (default 60000). */
  deadline?: number | null;
}

/** A WebSocket constructor: the browser's, Node 22's, or the `ws` package's. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[], options?: object) => any;

export interface ClientOptions {
  WebSocket?: WebSocketConstructor;
  /** "query" (default): `?token=`; "header": `Authorization: Bearer`, for implementations taking `{headers}`. */
  auth?: 'query' | 'header';
  connectTimeout?: number;
  /** Reconnect after a loss and resume the kept processes followed (default false). */
  reconnect?: boolean | ReconnectPolicy;
  onNotification?: (method: string, params: any) => void;
  /** Errors answered with id null: a refused write notification or binary stdin frame. */
  onError?: (error: RpcError) => void;
  onClose?: (error: ConnectionError) => void;
  /** Before each wait of a reconnect; `error`: why the previous attempt failed (null before the first). */
  onRetry?: (retry: { attempt: number; delay: number; error: ConnectionError | null }) => void;
  onReconnect?: (hello: Hello) => void;
}

/** An error answer of the server; its class follows `code` (see rpcError), `name` is the class's. */
export class RpcError extends Error {
  code: number | null;
  data: any;
  method: string | null;
  constructor(error: { code: number | null; message: string; data?: any }, method?: string | null);
}

export class ParseError extends RpcError {}
export class InvalidRequest extends RpcError {}
export class MethodNotFound extends RpcError {}
export class InvalidParams extends RpcError {}
export class InternalError extends RpcError {}
/** -32001: the executable does not exist or is not in PATH. */
export class NotFound extends RpcError {}
/** -32002 */
export class NoSuchProcess extends RpcError {}
/** -32003: not executable, a directory, or an unusable `cwd`. */
export class PermissionDenied extends RpcError {}
/** -32004: too many processes, a stdin chunk too large, or the stdin buffer full. */
export class LimitExceeded extends RpcError {}
/** -32005: the process has exited, or its stdin is closed. */
export class ProcessExited extends RpcError {}
/** -32006: a `wait` timed out on the server, or a wait of this client did. */
export class Timeout extends RpcError {}
/** -32007 */
export class SpawnFailed extends RpcError {}
/** -32008: its exit has not been sent yet (release). */
export class ProcessRunning extends RpcError {}
/** -32009: the process runs on another node, which cannot be reached now. */
export class ClusterUnavailable extends RpcError {}

/** `run` kept only `max_output` bytes of a stream; `result` is the partial result. */
export class OutputTruncated extends RpcError {
  result: RunResult;
  constructor(result: RunResult);
}

/** The RpcError subclass of a JSON-RPC error's code (RpcError itself for an unknown code). */
export function rpcError(error: { code: number; message: string; data?: any }, method?: string | null): RpcError;

export class ConnectionError extends Error {
  /** The WebSocket close code, when there was one. */
  code: number | null;
  reason: string;
  /** The HTTP status of a refused handshake (401, 403), when it could be known. */
  status: number | null;
  constructor(message: string, event?: { code?: number | null; reason?: string; status?: number | null });
}

/** The server refused the token (HTTP 401). */
export class AuthenticationError extends ConnectionError {}

export class ProcessLost extends ConnectionError {
  proc: number;
  constructor(proc: number, message: string);
}

export class Process implements AsyncIterable<Chunk> {
  readonly client: Client;
  readonly proc: number;
  readonly pid: number | null;
  readonly pgid: number | null;
  /** Started on a pseudo-terminal. */
  readonly pty: boolean;
  /** Attached again after a reconnect: kept (on_disconnect "keep") or attached to. */
  resumable: boolean;
  /** Per stream, the offset of the next byte expected. */
  offsets: Partial<Record<Stream, number>>;
  /** Some bytes asked for were no longer held by the server. */
  truncated: boolean;
  /** The last `screen` notification (an attach with `snapshot`). */
  screen: ScreenParams | null;
  /** "control" or "view" once attached; null for a process started by this client. */
  readonly mode: AttachMode | null;
  /** The answer of the last attach, for a process followed with `attach`. */
  info: AttachAnswer | null;
  /** The exit status once it came. */
  status: ExitStatus | null;
  /** Not ended yet: no exit, no detach, no loss. */
  readonly running: boolean;
  /** Its output goes elsewhere now (detach, or attached again on the same client). */
  readonly detached: boolean;
  /** The last write refused after the fact (a binary frame's). */
  stdinError: RpcError | null;
  /** Resolves with the exit status; rejects with ConnectionError or ProcessLost. */
  readonly exit: Promise<ExitStatus>;
  on(event: 'output', listener: (chunk: Chunk) => void): this;
  on(event: 'exit', listener: (status: ExitStatus) => void): this;
  on(event: 'screen', listener: (params: ScreenParams) => void): this;
  [Symbol.asyncIterator](): AsyncIterator<Chunk>;
  call(method: string, params?: Record<string, unknown>): Promise<any>;
  /** In chunks the server takes; `binary`: as binary frames.  Resolves once every byte is in the pipe. */
  write(data: string | Uint8Array, options?: { binary?: boolean }): Promise<{ written: number }>;
  send(data: string | Uint8Array): void;
  /** Resolves once every byte sent before is in the pipe; rejects with a refusal of any. */
  flush(): Promise<void>;
  closeStdin(): Promise<{ written?: number }>;
  /** Writes `input` (if any), closes stdin, resolves with all the output until the exit. */
  communicate(input?: string | Uint8Array | null): Promise<{ stdout: Uint8Array; stderr: Uint8Array }>;
  resize(rows: number, cols: number): Promise<ResizeAnswer>;
  share(options?: ShareOptions): Promise<ShareAnswer>;
  signal(signal: Signal, options?: { group?: boolean }): Promise<{}>;
  kill(): Promise<{}>;
  stop(options?: { signal?: Signal; grace?: number | null }): Promise<ExitStatus>;
  /** The exit status; `timeout` in seconds, then a Timeout (the process runs on). */
  wait(timeout?: number | null): Promise<ExitStatus>;
  detach(): Promise<void>;
  release(): Promise<{}>;
}

export class Client {
  constructor(url: string, token: string | null, options?: ClientOptions);
  static connect(url: string, token: string | null, options?: ClientOptions): Promise<Client>;
  readonly url: string;
  readonly hello: Hello | null;
  readonly connected: boolean;
  /** For good: closed, or lost and not resumed (then `failure` says why). */
  readonly closed: boolean;
  readonly failure: ConnectionError | null;
  /** Connections made again after a loss (with `reconnect`). */
  readonly reconnects: number;
  /** The processes followed, by proc. */
  readonly processes: Map<number, Process>;
  connect(): Promise<Hello>;
  close(): void;
  /** While reconnecting: make the next attempt now rather than at the end of its wait. */
  reconnectNow(): void;
  call(method: string, params?: Record<string, unknown>): Promise<any>;
  start(argv: string[], options?: StartOptions): Promise<Process>;
  attach(proc: number, options?: AttachOptions): Promise<Process>;
  run(argv: string[], options?: RunOptions): Promise<RunResult>;
  list(): Promise<ProcessInfo[]>;
  find(pid: number): Promise<ProcessInfo>;
  ping(): Promise<{ time: number }>;
  lookpath(file: string): Promise<string>;
  /** Waits on the server, for any process of this token; `timeout` in seconds. */
  wait(proc: number, timeout?: number | null): Promise<ExitStatus>;
  signal(proc: number, signal: Signal, options?: { group?: boolean }): Promise<{}>;
  kill(proc: number): Promise<{}>;
  stop(proc: number, options?: { signal?: Signal; grace?: number | null }): Promise<ExitStatus>;
  resize(proc: number, rows: number, cols: number): Promise<ResizeAnswer>;
  share(proc: number, options?: ShareOptions): Promise<ShareAnswer>;
  unshare(id: string): Promise<{}>;
  release(proc: number): Promise<{}>;
}

/** The methods sent again after a reconnect when they were in flight: they only read. */
export const SAFE_TO_RETRY: ReadonlySet<string>;
export function backoff(attempt: number, policy?: { first?: number; max?: number }): number;
export function base64ToBytes(text: string): Uint8Array;
export function bytesToBase64(bytes: Uint8Array): string;
export function decodeData(data: string, encoding?: Encoding): Uint8Array;
/** `promise`, or a Timeout after `seconds` (null: no limit). */
export function within<T>(promise: Promise<T>, seconds: number | null, message: string): Promise<T>;
