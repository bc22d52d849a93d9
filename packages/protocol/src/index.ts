export {
  ERROR_CODES,
  BertqError,
  BadRequestError,
  TooLargeError,
  TooLongError,
  OverloadedError,
  ModelError,
  InternalError,
  NoWorkersError,
  TimeoutError,
  errorFromCode,
  isErrorCode,
  toBertqError,
} from './errors.js';
export type { ErrorCode, BertqErrorOptions } from './errors.js';
