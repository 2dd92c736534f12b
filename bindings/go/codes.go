// The code table of docs/CODES.md in Go. TestCodeTable checks it against
// that table and against the library's own words for every code, so a code
// added there fails the tests until it is added here.

package tessera

// The named codes of docs/CODES.md. A code of 10000 and above is a kernel
// rejection: 10000 + the rule (see [Code.KernelRule]).
const (
	// CodeOK (ok): success.
	CodeOK Code = 0
	// CodeWouldBlock (would_block): the outgoing queue is full: drain transmits, then call again.
	CodeWouldBlock Code = 1
	// CodeEventsPending (events_pending): events wait to be read: drain events, then call again.
	CodeEventsPending Code = 2
	// CodeBufferTooSmall (buffer_too_small): the buffer is too small; the size needed was reported.
	CodeBufferTooSmall Code = 3
	// CodeNullArgument (null_argument): a pointer argument was NULL.
	CodeNullArgument Code = 4
	// CodeInvalidArgument (invalid_argument): an argument is out of range or not of the expected form.
	CodeInvalidArgument Code = 5
	// CodePanic (panic): internal error caught at the library boundary; free the handle.
	CodePanic Code = 6
	// CodeUnsupported (unsupported): the library was built without the feature this call needs.
	CodeUnsupported Code = 7
	// CodeIO (io): a file or socket operation failed.
	CodeIO Code = 8
	// CodeNothing (nothing): nothing to return now.
	CodeNothing Code = 9
	// CodeStopped (stopped): the object was stopped and takes no more calls of this kind.
	CodeStopped Code = 10
	// CodeInUse (in_use): the object is busy: its own thread runs it, or a callback of a call on it made this call.
	CodeInUse Code = 11
	// CodeNotConnected (not_connected): no session is established.
	CodeNotConnected Code = 100
	// CodeAlreadyConnected (already_connected): a session is already open.
	CodeAlreadyConnected Code = 101
	// CodeUnknownJob (unknown_job): no such job on this agent.
	CodeUnknownJob Code = 102
	// CodeInvalidJobState (invalid_job_state): the job is not in a state that allows this call.
	CodeInvalidJobState Code = 103
	// CodeOutputOutOfOrder (output_out_of_order): outputs written for another buffer than the next one due.
	CodeOutputOutOfOrder Code = 104
	// CodeOutputIncomplete (output_incomplete): not every read-back buffer was written in full.
	CodeOutputIncomplete Code = 105
	// CodeOutputMismatch (output_mismatch): outputs written again differ from the first time.
	CodeOutputMismatch Code = 106
	// CodeCapacityExceeded (capacity_exceeded): the agent holds as many jobs as it can.
	CodeCapacityExceeded Code = 107
	// CodeNoInput (no_input): no input of this job is readable now.
	CodeNoInput Code = 108
	// CodeInvalidConfig (invalid_config): a configuration value is out of range.
	CodeInvalidConfig Code = 200
	// CodeKeyRejected (key_rejected): not an Ed25519 key of the expected form.
	CodeKeyRejected Code = 201
	// CodeKeyMismatch (key_mismatch): the public key does not belong to the seed.
	CodeKeyMismatch Code = 202
	// CodeNoRandomness (no_randomness): the system random source failed.
	CodeNoRandomness Code = 203
	// CodeSignerUnavailable (signer_unavailable): the signing key is not available now.
	CodeSignerUnavailable Code = 210
	// CodeSignerFailed (signer_failed): the signer failed.
	CodeSignerFailed Code = 211
	// CodeStoreIO (store_io): the store could not read or write a file, or a file is damaged.
	CodeStoreIO Code = 300
	// CodeStoreOtherKey (store_other_key): the store's chain belongs to another device key.
	CodeStoreOtherKey Code = 301
	// CodeStoreConflict (store_conflict): two stored chain positions disagree.
	CodeStoreConflict Code = 302
	// CodeVerifyMalformed (verify_malformed): not a well-formed structure of the expected kind.
	CodeVerifyMalformed Code = 401
	// CodeVerifyBadSignature (verify_bad_signature): the signature does not verify.
	CodeVerifyBadSignature Code = 402
	// CodeVerifyUnknownKey (verify_unknown_key): signed by another key than the one expected.
	CodeVerifyUnknownKey Code = 403
	// CodeVerifyWrongNonce (verify_wrong_nonce): bound to another challenge or nonce.
	CodeVerifyWrongNonce Code = 404
	// CodeVerifyReplayed (verify_replayed): a replayed receipt (sequence already seen).
	CodeVerifyReplayed Code = 405
	// CodeVerifyOutOfOrder (verify_out_of_order): a receipt is missing (sequence past the next one).
	CodeVerifyOutOfOrder Code = 406
	// CodeVerifyBrokenChain (verify_broken_chain): the previous-receipt hash does not match.
	CodeVerifyBrokenChain Code = 407
	// CodeVerifyChunkProofMismatch (verify_chunk_proof_mismatch): the chunk's proof does not lead to the signed root.
	CodeVerifyChunkProofMismatch Code = 408
	// CodeVulkanLoaderUnavailable (vulkan_loader_unavailable): the Vulkan loader could not be opened.
	CodeVulkanLoaderUnavailable Code = 501
	// CodeVulkanNoDevice (vulkan_no_device): no Vulkan device.
	CodeVulkanNoDevice Code = 502
	// CodeVulkanDeviceNotFound (vulkan_device_not_found): no device matches the selector.
	CodeVulkanDeviceNotFound Code = 503
	// CodeVulkanAPIVersionTooOld (vulkan_api_version_too_old): the device only offers Vulkan 1.0.
	CodeVulkanAPIVersionTooOld Code = 504
	// CodeVulkanNoComputeQueue (vulkan_no_compute_queue): the device has no compute queue.
	CodeVulkanNoComputeQueue Code = 505
	// CodeVulkanValidationUnavailable (vulkan_validation_unavailable): the Vulkan validation layers are not installed.
	CodeVulkanValidationUnavailable Code = 506
	// CodeVulkanNoUsableMemory (vulkan_no_usable_memory): no host-visible memory usable for storage buffers.
	CodeVulkanNoUsableMemory Code = 507
	// CodeVulkanError (vulkan_error): a Vulkan call failed.
	CodeVulkanError Code = 508
	// CodeVulkanKhronosUnavailable (vulkan_khronos_unavailable): the Khronos SPIR-V validator could not be run.
	CodeVulkanKhronosUnavailable Code = 509
	// CodePeerMalformed (peer_malformed): the peer sent a body that does not decode.
	CodePeerMalformed Code = 1001
	// CodePeerFrameTooLarge (peer_frame_too_large): the peer announced a frame over the maximum size.
	CodePeerFrameTooLarge Code = 1002
	// CodePeerUnsupportedVersion (peer_unsupported_version): the peer speaks an unsupported version.
	CodePeerUnsupportedVersion Code = 1003
	// CodePeerUnknownMessageType (peer_unknown_message_type): the peer sent an unknown message type.
	CodePeerUnknownMessageType Code = 1004
	// CodePeerUnexpectedMessage (peer_unexpected_message): the peer sent a message not allowed now.
	CodePeerUnexpectedMessage Code = 1005
	// CodePeerUnknownJob (peer_unknown_job): the peer named a job the receiver does not hold.
	CodePeerUnknownJob Code = 1006
	// CodePeerBadAssignment (peer_bad_assignment): the assignment breaks its offer or the limits.
	CodePeerBadAssignment Code = 1007
	// CodePeerChunkOutOfOrder (peer_chunk_out_of_order): an input chunk out of order or of the wrong length.
	CodePeerChunkOutOfOrder Code = 1008
	// CodePeerChunkDigestMismatch (peer_chunk_digest_mismatch): a chunk does not match its digest.
	CodePeerChunkDigestMismatch Code = 1009
	// CodePeerRootMismatch (peer_root_mismatch): a stream does not match its Merkle root.
	CodePeerRootMismatch Code = 1010
	// CodePeerBadMagic (peer_bad_magic): the stream is not Tessera (bad magic).
	CodePeerBadMagic Code = 1011
	// CodePeerEvidenceRejected (peer_evidence_rejected): the coordinator rejected the evidence.
	CodePeerEvidenceRejected Code = 1012
	// CodePeerReceiptRejected (peer_receipt_rejected): a receipt did not verify.
	CodePeerReceiptRejected Code = 1013
	// CodeFailedKernelRejected (failed_kernel_rejected): the kernel was rejected.
	CodeFailedKernelRejected Code = 2001
	// CodeFailedTimeout (failed_timeout): the kernel ran past its time limit.
	CodeFailedTimeout Code = 2002
	// CodeFailedDeadlineExceeded (failed_deadline_exceeded): the job's deadline passed.
	CodeFailedDeadlineExceeded Code = 2003
	// CodeFailedDeviceLost (failed_device_lost): the GPU was lost while running the job.
	CodeFailedDeviceLost Code = 2004
	// CodeFailedOutOfMemory (failed_out_of_memory): the device ran out of memory.
	CodeFailedOutOfMemory Code = 2005
	// CodeFailedInputIntegrity (failed_input_integrity): an input did not match its digest.
	CodeFailedInputIntegrity Code = 2006
	// CodeFailedHost (failed_host): the provider's host failed.
	CodeFailedHost Code = 2007
	// CodeJobTimeout (job_timeout): the job ran past its timeout.
	CodeJobTimeout Code = 2101
	// CodeJobDeviceLost (job_device_lost): the device was lost while the job ran.
	CodeJobDeviceLost Code = 2102
	// CodeJobOutOfMemory (job_out_of_memory): memory ran out while setting up the job.
	CodeJobOutOfMemory Code = 2103
	// CodeJobVulkanError (job_vulkan_error): a Vulkan call failed.
	CodeJobVulkanError Code = 2104
	// CodeJobDeviceUnavailable (job_device_unavailable): too many devices still run abandoned work.
	CodeJobDeviceUnavailable Code = 2105
	// CodeJobValidatorUnavailable (job_validator_unavailable): the Khronos validator could not be run.
	CodeJobValidatorUnavailable Code = 2106
	// CodeJobCancelled (job_cancelled): the job was cancelled.
	CodeJobCancelled Code = 2107
	// CodeKernelBase (kernel_rejected): 10000 + the rule the kernel broke.
	CodeKernelBase Code = 10000
)

// codeNames names every code of docs/CODES.md.
var codeNames = map[Code]string{
	CodeOK:                          "ok",
	CodeWouldBlock:                  "would_block",
	CodeEventsPending:               "events_pending",
	CodeBufferTooSmall:              "buffer_too_small",
	CodeNullArgument:                "null_argument",
	CodeInvalidArgument:             "invalid_argument",
	CodePanic:                       "panic",
	CodeUnsupported:                 "unsupported",
	CodeIO:                          "io",
	CodeNothing:                     "nothing",
	CodeStopped:                     "stopped",
	CodeInUse:                       "in_use",
	CodeNotConnected:                "not_connected",
	CodeAlreadyConnected:            "already_connected",
	CodeUnknownJob:                  "unknown_job",
	CodeInvalidJobState:             "invalid_job_state",
	CodeOutputOutOfOrder:            "output_out_of_order",
	CodeOutputIncomplete:            "output_incomplete",
	CodeOutputMismatch:              "output_mismatch",
	CodeCapacityExceeded:            "capacity_exceeded",
	CodeNoInput:                     "no_input",
	CodeInvalidConfig:               "invalid_config",
	CodeKeyRejected:                 "key_rejected",
	CodeKeyMismatch:                 "key_mismatch",
	CodeNoRandomness:                "no_randomness",
	CodeSignerUnavailable:           "signer_unavailable",
	CodeSignerFailed:                "signer_failed",
	CodeStoreIO:                     "store_io",
	CodeStoreOtherKey:               "store_other_key",
	CodeStoreConflict:               "store_conflict",
	CodeVerifyMalformed:             "verify_malformed",
	CodeVerifyBadSignature:          "verify_bad_signature",
	CodeVerifyUnknownKey:            "verify_unknown_key",
	CodeVerifyWrongNonce:            "verify_wrong_nonce",
	CodeVerifyReplayed:              "verify_replayed",
	CodeVerifyOutOfOrder:            "verify_out_of_order",
	CodeVerifyBrokenChain:           "verify_broken_chain",
	CodeVerifyChunkProofMismatch:    "verify_chunk_proof_mismatch",
	CodeVulkanLoaderUnavailable:     "vulkan_loader_unavailable",
	CodeVulkanNoDevice:              "vulkan_no_device",
	CodeVulkanDeviceNotFound:        "vulkan_device_not_found",
	CodeVulkanAPIVersionTooOld:      "vulkan_api_version_too_old",
	CodeVulkanNoComputeQueue:        "vulkan_no_compute_queue",
	CodeVulkanValidationUnavailable: "vulkan_validation_unavailable",
	CodeVulkanNoUsableMemory:        "vulkan_no_usable_memory",
	CodeVulkanError:                 "vulkan_error",
	CodeVulkanKhronosUnavailable:    "vulkan_khronos_unavailable",
	CodePeerMalformed:               "peer_malformed",
	CodePeerFrameTooLarge:           "peer_frame_too_large",
	CodePeerUnsupportedVersion:      "peer_unsupported_version",
	CodePeerUnknownMessageType:      "peer_unknown_message_type",
	CodePeerUnexpectedMessage:       "peer_unexpected_message",
	CodePeerUnknownJob:              "peer_unknown_job",
	CodePeerBadAssignment:           "peer_bad_assignment",
	CodePeerChunkOutOfOrder:         "peer_chunk_out_of_order",
	CodePeerChunkDigestMismatch:     "peer_chunk_digest_mismatch",
	CodePeerRootMismatch:            "peer_root_mismatch",
	CodePeerBadMagic:                "peer_bad_magic",
	CodePeerEvidenceRejected:        "peer_evidence_rejected",
	CodePeerReceiptRejected:         "peer_receipt_rejected",
	CodeFailedKernelRejected:        "failed_kernel_rejected",
	CodeFailedTimeout:               "failed_timeout",
	CodeFailedDeadlineExceeded:      "failed_deadline_exceeded",
	CodeFailedDeviceLost:            "failed_device_lost",
	CodeFailedOutOfMemory:           "failed_out_of_memory",
	CodeFailedInputIntegrity:        "failed_input_integrity",
	CodeFailedHost:                  "failed_host",
	CodeJobTimeout:                  "job_timeout",
	CodeJobDeviceLost:               "job_device_lost",
	CodeJobOutOfMemory:              "job_out_of_memory",
	CodeJobVulkanError:              "job_vulkan_error",
	CodeJobDeviceUnavailable:        "job_device_unavailable",
	CodeJobValidatorUnavailable:     "job_validator_unavailable",
	CodeJobCancelled:                "job_cancelled",
}

// Sentinel errors, one per named code (not for ok): errors.Is(err,
// ErrBadSignature) holds for any [*Error] with that code. Verification
// codes drop their verify_ prefix.
var (
	// ErrWouldBlock: the outgoing queue is full: drain transmits, then call again.
	ErrWouldBlock = &Error{Code: CodeWouldBlock}
	// ErrEventsPending: events wait to be read: drain events, then call again.
	ErrEventsPending = &Error{Code: CodeEventsPending}
	// ErrBufferTooSmall: the buffer is too small; the size needed was reported.
	ErrBufferTooSmall = &Error{Code: CodeBufferTooSmall}
	// ErrNullArgument: a pointer argument was NULL.
	ErrNullArgument = &Error{Code: CodeNullArgument}
	// ErrInvalidArgument: an argument is out of range or not of the expected form.
	ErrInvalidArgument = &Error{Code: CodeInvalidArgument}
	// ErrPanic: internal error caught at the library boundary; free the handle.
	ErrPanic = &Error{Code: CodePanic}
	// ErrUnsupported: the library was built without the feature this call needs.
	ErrUnsupported = &Error{Code: CodeUnsupported}
	// ErrIO: a file or socket operation failed.
	ErrIO = &Error{Code: CodeIO}
	// ErrNothing: nothing to return now.
	ErrNothing = &Error{Code: CodeNothing}
	// ErrStopped: the object was stopped and takes no more calls of this kind.
	ErrStopped = &Error{Code: CodeStopped}
	// ErrInUse: the object is busy: its own thread runs it, or a callback of a call on it made this call.
	ErrInUse = &Error{Code: CodeInUse}
	// ErrNotConnected: no session is established.
	ErrNotConnected = &Error{Code: CodeNotConnected}
	// ErrAlreadyConnected: a session is already open.
	ErrAlreadyConnected = &Error{Code: CodeAlreadyConnected}
	// ErrUnknownJob: no such job on this agent.
	ErrUnknownJob = &Error{Code: CodeUnknownJob}
	// ErrInvalidJobState: the job is not in a state that allows this call.
	ErrInvalidJobState = &Error{Code: CodeInvalidJobState}
	// ErrOutputOutOfOrder: outputs written for another buffer than the next one due.
	ErrOutputOutOfOrder = &Error{Code: CodeOutputOutOfOrder}
	// ErrOutputIncomplete: not every read-back buffer was written in full.
	ErrOutputIncomplete = &Error{Code: CodeOutputIncomplete}
	// ErrOutputMismatch: outputs written again differ from the first time.
	ErrOutputMismatch = &Error{Code: CodeOutputMismatch}
	// ErrCapacityExceeded: the agent holds as many jobs as it can.
	ErrCapacityExceeded = &Error{Code: CodeCapacityExceeded}
	// ErrNoInput: no input of this job is readable now.
	ErrNoInput = &Error{Code: CodeNoInput}
	// ErrInvalidConfig: a configuration value is out of range.
	ErrInvalidConfig = &Error{Code: CodeInvalidConfig}
	// ErrKeyRejected: not an Ed25519 key of the expected form.
	ErrKeyRejected = &Error{Code: CodeKeyRejected}
	// ErrKeyMismatch: the public key does not belong to the seed.
	ErrKeyMismatch = &Error{Code: CodeKeyMismatch}
	// ErrNoRandomness: the system random source failed.
	ErrNoRandomness = &Error{Code: CodeNoRandomness}
	// ErrSignerUnavailable: the signing key is not available now.
	ErrSignerUnavailable = &Error{Code: CodeSignerUnavailable}
	// ErrSignerFailed: the signer failed.
	ErrSignerFailed = &Error{Code: CodeSignerFailed}
	// ErrStoreIO: the store could not read or write a file, or a file is damaged.
	ErrStoreIO = &Error{Code: CodeStoreIO}
	// ErrStoreOtherKey: the store's chain belongs to another device key.
	ErrStoreOtherKey = &Error{Code: CodeStoreOtherKey}
	// ErrStoreConflict: two stored chain positions disagree.
	ErrStoreConflict = &Error{Code: CodeStoreConflict}
	// ErrMalformed: not a well-formed structure of the expected kind.
	ErrMalformed = &Error{Code: CodeVerifyMalformed}
	// ErrBadSignature: the signature does not verify.
	ErrBadSignature = &Error{Code: CodeVerifyBadSignature}
	// ErrUnknownKey: signed by another key than the one expected.
	ErrUnknownKey = &Error{Code: CodeVerifyUnknownKey}
	// ErrWrongNonce: bound to another challenge or nonce.
	ErrWrongNonce = &Error{Code: CodeVerifyWrongNonce}
	// ErrReplayed: a replayed receipt (sequence already seen).
	ErrReplayed = &Error{Code: CodeVerifyReplayed}
	// ErrOutOfOrder: a receipt is missing (sequence past the next one).
	ErrOutOfOrder = &Error{Code: CodeVerifyOutOfOrder}
	// ErrBrokenChain: the previous-receipt hash does not match.
	ErrBrokenChain = &Error{Code: CodeVerifyBrokenChain}
	// ErrChunkProofMismatch: the chunk's proof does not lead to the signed root.
	ErrChunkProofMismatch = &Error{Code: CodeVerifyChunkProofMismatch}
	// ErrVulkanLoaderUnavailable: the Vulkan loader could not be opened.
	ErrVulkanLoaderUnavailable = &Error{Code: CodeVulkanLoaderUnavailable}
	// ErrVulkanNoDevice: no Vulkan device.
	ErrVulkanNoDevice = &Error{Code: CodeVulkanNoDevice}
	// ErrVulkanDeviceNotFound: no device matches the selector.
	ErrVulkanDeviceNotFound = &Error{Code: CodeVulkanDeviceNotFound}
	// ErrVulkanAPIVersionTooOld: the device only offers Vulkan 1.0.
	ErrVulkanAPIVersionTooOld = &Error{Code: CodeVulkanAPIVersionTooOld}
	// ErrVulkanNoComputeQueue: the device has no compute queue.
	ErrVulkanNoComputeQueue = &Error{Code: CodeVulkanNoComputeQueue}
	// ErrVulkanValidationUnavailable: the Vulkan validation layers are not installed.
	ErrVulkanValidationUnavailable = &Error{Code: CodeVulkanValidationUnavailable}
	// ErrVulkanNoUsableMemory: no host-visible memory usable for storage buffers.
	ErrVulkanNoUsableMemory = &Error{Code: CodeVulkanNoUsableMemory}
	// ErrVulkanError: a Vulkan call failed.
	ErrVulkanError = &Error{Code: CodeVulkanError}
	// ErrVulkanKhronosUnavailable: the Khronos SPIR-V validator could not be run.
	ErrVulkanKhronosUnavailable = &Error{Code: CodeVulkanKhronosUnavailable}
	// ErrPeerMalformed: the peer sent a body that does not decode.
	ErrPeerMalformed = &Error{Code: CodePeerMalformed}
	// ErrPeerFrameTooLarge: the peer announced a frame over the maximum size.
	ErrPeerFrameTooLarge = &Error{Code: CodePeerFrameTooLarge}
	// ErrPeerUnsupportedVersion: the peer speaks an unsupported version.
	ErrPeerUnsupportedVersion = &Error{Code: CodePeerUnsupportedVersion}
	// ErrPeerUnknownMessageType: the peer sent an unknown message type.
	ErrPeerUnknownMessageType = &Error{Code: CodePeerUnknownMessageType}
	// ErrPeerUnexpectedMessage: the peer sent a message not allowed now.
	ErrPeerUnexpectedMessage = &Error{Code: CodePeerUnexpectedMessage}
	// ErrPeerUnknownJob: the peer named a job the receiver does not hold.
	ErrPeerUnknownJob = &Error{Code: CodePeerUnknownJob}
	// ErrPeerBadAssignment: the assignment breaks its offer or the limits.
	ErrPeerBadAssignment = &Error{Code: CodePeerBadAssignment}
	// ErrPeerChunkOutOfOrder: an input chunk out of order or of the wrong length.
	ErrPeerChunkOutOfOrder = &Error{Code: CodePeerChunkOutOfOrder}
	// ErrPeerChunkDigestMismatch: a chunk does not match its digest.
	ErrPeerChunkDigestMismatch = &Error{Code: CodePeerChunkDigestMismatch}
	// ErrPeerRootMismatch: a stream does not match its Merkle root.
	ErrPeerRootMismatch = &Error{Code: CodePeerRootMismatch}
	// ErrPeerBadMagic: the stream is not Tessera (bad magic).
	ErrPeerBadMagic = &Error{Code: CodePeerBadMagic}
	// ErrPeerEvidenceRejected: the coordinator rejected the evidence.
	ErrPeerEvidenceRejected = &Error{Code: CodePeerEvidenceRejected}
	// ErrPeerReceiptRejected: a receipt did not verify.
	ErrPeerReceiptRejected = &Error{Code: CodePeerReceiptRejected}
	// ErrFailedKernelRejected: the kernel was rejected.
	ErrFailedKernelRejected = &Error{Code: CodeFailedKernelRejected}
	// ErrFailedTimeout: the kernel ran past its time limit.
	ErrFailedTimeout = &Error{Code: CodeFailedTimeout}
	// ErrFailedDeadlineExceeded: the job's deadline passed.
	ErrFailedDeadlineExceeded = &Error{Code: CodeFailedDeadlineExceeded}
	// ErrFailedDeviceLost: the GPU was lost while running the job.
	ErrFailedDeviceLost = &Error{Code: CodeFailedDeviceLost}
	// ErrFailedOutOfMemory: the device ran out of memory.
	ErrFailedOutOfMemory = &Error{Code: CodeFailedOutOfMemory}
	// ErrFailedInputIntegrity: an input did not match its digest.
	ErrFailedInputIntegrity = &Error{Code: CodeFailedInputIntegrity}
	// ErrFailedHost: the provider's host failed.
	ErrFailedHost = &Error{Code: CodeFailedHost}
	// ErrJobTimeout: the job ran past its timeout.
	ErrJobTimeout = &Error{Code: CodeJobTimeout}
	// ErrJobDeviceLost: the device was lost while the job ran.
	ErrJobDeviceLost = &Error{Code: CodeJobDeviceLost}
	// ErrJobOutOfMemory: memory ran out while setting up the job.
	ErrJobOutOfMemory = &Error{Code: CodeJobOutOfMemory}
	// ErrJobVulkanError: a Vulkan call failed.
	ErrJobVulkanError = &Error{Code: CodeJobVulkanError}
	// ErrJobDeviceUnavailable: too many devices still run abandoned work.
	ErrJobDeviceUnavailable = &Error{Code: CodeJobDeviceUnavailable}
	// ErrJobValidatorUnavailable: the Khronos validator could not be run.
	ErrJobValidatorUnavailable = &Error{Code: CodeJobValidatorUnavailable}
	// ErrJobCancelled: the job was cancelled.
	ErrJobCancelled = &Error{Code: CodeJobCancelled}
)
