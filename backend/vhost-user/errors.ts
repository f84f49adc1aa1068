// The error family of the vhost-user layer (DESIGN.md "Errors, one family per layer"):
// the front-end sent something invalid. The dispatcher answers by closing this connection
// with the message as the logged reason; the server stays up for the next front-end.

import { requestName } from './protocol';

export class ProtocolError extends Error {
  /** The request code of the offending message (0 when no header was read yet). */
  readonly request: number;

  constructor(request: number, message: string) {
    super(request === 0 ? message : `${requestName(request)}: ${message}`);
    this.name = 'ProtocolError';
    this.request = request;
  }
}
