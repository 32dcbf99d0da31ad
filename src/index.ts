/**
 * tcpkit's library: servers, clients and the protocol codec. The CLI is built on exactly this.
 */
/** `createServer(options)`: a {@link Server} serving messages (echo, or `onMessage`) and `options.services`. */
export { createServer, type CreateServerOptions } from './create-server.js';
/** `new Server(options)`: serves exactly `options.services` (no message service unless given one). */
export { Server, type ServerEventMap, type ServerStats } from './server/server.js';
/** Options of a Server (without `onMessage`, which {@link createServer} adds), and their defaults. */
export { SERVER_DEFAULTS, type ServerOptions } from './server/options.js';
export { connect, Client, type ClientEventMap, type ClientState, type RequestChannel, type RequestOptions, type StreamConsumer } from './client/client.js';
export { withClient, sendOnce } from './client/short.js';
export { CLIENT_DEFAULTS, type ClientOptions, type Target } from './client/options.js';
export {
  echoHandler,
  fixedReplyHandler,
  messageService,
  type MessageContext,
  type MessageHandler,
  type MessageReply,
} from './services/message.js';
export type { Exchange, Service } from './server/service.js';
export type { RawExchange, RawHandler } from './raw/handler.js';
export { rawMessageHandler } from './raw/message.js';
export { rawFileHandler, rawDownload, type RawDownloadResult } from './raw/files.js';
export { rawExchange, rawSend, type RawSink } from './raw/client.js';
export { FileRoot } from './services/files/jail.js';
export { fileService, type FileServiceOptions } from './services/files/download/service.js';
export { getFile, getStream, list, stat, type FileHandler, type FileStream, type GetFileResult } from './services/files/download/client.js';
export { download, type DownloadOptions, type DownloadProgress, type DownloadResult } from './services/files/download/save.js';
export { SMALL_FILE_BYTES } from './services/files/small.js';
export { partialPaths } from './services/files/commit.js';
export { sweepUploads, uploadService, UPLOAD_DEFAULTS, type SweepResult, type UploadServiceOptions } from './services/files/upload/service.js';
export { upload, uploadStream, type UploadOptions, type UploadResult } from './services/files/upload/client.js';
export type { EntryInfo, FileHead, Listing, PutDone } from './services/files/wire.js';
export { validateName } from './services/files/names.js';
export { withRetries, isRetryable, backoffMs } from './client/retry.js';
export type { PeerInfo, CloseReason } from './transport/peer.js';
export { DEFAULT_PORT, parseAddress, formatAddress, normalizeIp, type HostPort } from './transport/address.js';
export {
  ERROR_CODES,
  TcpkitError,
  ProtocolError,
  RemoteError,
  ConnectionError,
  TimeoutError,
  OptionError,
  isErrorCodeName,
  type ErrorCode,
  type ErrorCodeName,
} from './errors.js';
export * as protocol from './protocol/index.js';
export { VERSION } from './version.js';
