/**
 * The one error of the client that is not a wire error: the client itself was closed (by `close()`,
 * or because its NATS connection closed). Protocol failures are the typed errors of @bertq/protocol.
 */
export class ClientClosedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ClientClosedError';
  }
}
