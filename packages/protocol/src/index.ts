export {
  ERROR_CODES,
  BertqError,
  BadRequestError,
  TooLargeError,
  UnauthorizedError,
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

export {
  PROTOCOL_VERSION,
  SUBJECT_ROOT,
  SERVICE_FRAMEWORK_NAME,
  DEFAULT_SERVICE,
  PRIORITIES,
  CONTROL_OPERATIONS,
  normalizeServiceName,
  validateSubjectToken,
  jobSubject,
  jobWildcardSubject,
  resultsSubject,
  WORKER_INBOX_PREFIX,
  isResultsSubject,
  validateTenant,
  tenantInboxPrefix,
  controlSubject,
  streamName,
  consumerName,
  priorityFor,
  serviceNames,
  isPublishSubject,
} from './subjects.js';
export type { Priority, ControlOperation, ServiceNames } from './subjects.js';

export {
  HEADERS,
  getHeader,
  dedupId,
  newRequestId,
  asciiHeaderValue,
  asciiJson,
  headerWireSize,
  messageWireSize,
} from './headers.js';
export type { HeaderMap, HeaderName } from './headers.js';

export { SCHEMA_FILES, SCHEMAS, VALIDATORS, compiledSchemaId } from './schemas.js';
export type { SchemaName } from './schemas.js';

export { validateTexts, splitSentencePair, PY_SPACE } from './texts.js';
export { withDeadline, settlesWithin } from './deadline.js';
export { decodeUtf8 } from './utf8.js';
export type { Texts, ValidateTextsOptions } from './texts.js';
export { OUTPUT_DTYPES, encodeJob, parseJob, peekJobContext, validateJobBody, deadlineError } from './job.js';
export type { OutputDtype, Job, JobContext, JobOptions, JobLimits, JobInput, JobBody } from './job.js';

export { encodeResultFrames, decodeFrame, decodeRowBytes, STAGES, stageHeader } from './frames.js';
export type {
  Frame,
  FrameOptions,
  ResultInput,
  StageTimings,
  Stage,
  ResultFrame,
  ErrorFrame,
  DecodedFrame,
} from './frames.js';
export { encodeErrorFrame, decodeErrorReply, isErrorMessage, codeForStatus } from './error-frames.js';
export type { ErrorContext } from './error-frames.js';

export { RequestAssembler } from './assembler.js';
export type { AssemblerOptions, AssembledResult } from './assembler.js';

export {
  float32ToFloat16Bits,
  float16BitsToFloat32,
  float32ArrayToFloat16,
  float16ArrayToFloat32,
} from './float16.js';
export { BYTES_PER_ELEMENT, formatFloat32, elementCount } from './rows.js';
export { firstInvalidUtf8Byte } from './utf8.js';

export {
  PROTOCOL_ID,
  validateServerConfig,
  validateServerStatus,
  decodeControlReply,
  serviceMetadata,
} from './control.js';
export type {
  ServerConfig,
  ServerStatus,
  StageTimingStats,
  ConsumerDepth,
  TerminateRequest,
  TerminateReply,
  ServiceMetadata,
} from './control.js';
export { newRequestKey, sealOf, REQUEST_KEY } from './seal.js';
export { defaultCacheDir } from './cache-dir.js';
export { cutText, cutRow, cutSegments, textCutBudget, TEXT_CUT_MARGIN_TOKENS } from './text-cut.js';
export type { CutRule } from './text-cut.js';
