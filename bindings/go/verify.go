package tessera

/*
#include <stdlib.h>
#include <tessera.h>
*/
import "C"

import (
	"encoding/hex"
	"runtime"
	"unsafe"
)

// Nonce is a 32-byte challenge (the coordinator's, answered by evidence) or
// requester nonce (bound into a receipt).
type Nonce [32]byte

// String returns the nonce in lowercase hex.
func (n Nonce) String() string { return hex.EncodeToString(n[:]) }

// ChainState is a position in a device key's receipt chain: where a new
// agent or chain verifier continues from.
type ChainState struct {
	// NextSequence is the sequence number of the next receipt (the first
	// is 1).
	NextSequence uint64
	// PrevHash is the hash of the last receipt (zeros before the first).
	PrevHash Hash
}

func (c ChainState) toC() C.tessera_chain_state {
	var out C.tessera_chain_state
	out.next_sequence = C.uint64_t(c.NextSequence)
	*(*Hash)(unsafe.Pointer(&out.prev_hash[0])) = c.PrevHash
	return out
}

func chainFromC(c *C.tessera_chain_state) ChainState {
	return ChainState{
		NextSequence: uint64(c.next_sequence),
		PrevHash:     *(*Hash)(unsafe.Pointer(&c.prev_hash[0])),
	}
}

// DeviceType is what kind of device a GPU is.
type DeviceType uint32

// Device types.
const (
	DeviceOther         DeviceType = 0
	DeviceIntegratedGPU DeviceType = 1
	DeviceDiscreteGPU   DeviceType = 2
	DeviceVirtualGPU    DeviceType = 3
	DeviceCPU           DeviceType = 4
)

// String names the device type.
func (t DeviceType) String() string {
	switch t {
	case DeviceOther:
		return "other"
	case DeviceIntegratedGPU:
		return "integrated GPU"
	case DeviceDiscreteGPU:
		return "discrete GPU"
	case DeviceVirtualGPU:
		return "virtual GPU"
	case DeviceCPU:
		return "CPU"
	}
	return "unknown device type"
}

// Device is what a device is and can do: what an agent is configured with
// and signs into its evidence, and what verified evidence says.
type Device struct {
	// Name is the device name, UTF-8, at most 64 bytes.
	Name string
	// VendorID is the PCI vendor id.
	VendorID uint32
	// DeviceID is the vendor's device id.
	DeviceID uint32
	// DriverVersion is the driver version, vendor-encoded.
	DriverVersion uint32
	// APIVersion is the Vulkan API version the device supports.
	APIVersion uint32
	// Type is the kind of device.
	Type DeviceType
	// Features holds the feature bits (PROTOCOL.md, "Device capabilities").
	Features uint32
	// DeviceLocalBytes is the device-local memory.
	DeviceLocalBytes uint64
	// HostVisibleBytes is the host-visible memory.
	HostVisibleBytes uint64
	// MaxWorkgroupSize is the largest workgroup size in x, y, z.
	MaxWorkgroupSize [3]uint32
	// MaxWorkgroupCount is the most workgroups of one dispatch in x, y, z.
	MaxWorkgroupCount [3]uint32
	// MaxInvocations is the most invocations of one workgroup.
	MaxInvocations uint32
	// MaxSharedMemory is the workgroup shared memory, in bytes.
	MaxSharedMemory uint32
	// MaxStorageBufferRange is the largest storage buffer binding, in bytes.
	MaxStorageBufferRange uint64
	// SubgroupSize is the subgroup size.
	SubgroupSize uint32
	// CopyMBps is the measured copy bandwidth, MB/s (0: not measured).
	CopyMBps uint32
	// FMAMFlops is the measured FMA throughput, MFLOP/s (0: not measured).
	FMAMFlops uint32
}

func array3(a [3]C.uint32_t) [3]uint32 {
	return [3]uint32{uint32(a[0]), uint32(a[1]), uint32(a[2])}
}

func deviceFromInfo(d *C.tessera_device_info) Device {
	return Device{
		Name:                  cText(d.name[:]),
		VendorID:              uint32(d.vendor_id),
		DeviceID:              uint32(d.device_id),
		DriverVersion:         uint32(d.driver_version),
		APIVersion:            uint32(d.api_version),
		Type:                  DeviceType(d.device_type),
		Features:              uint32(d.features),
		DeviceLocalBytes:      uint64(d.device_local_bytes),
		HostVisibleBytes:      uint64(d.host_visible_bytes),
		MaxWorkgroupSize:      array3(d.max_workgroup_size),
		MaxWorkgroupCount:     array3(d.max_workgroup_count),
		MaxInvocations:        uint32(d.max_invocations),
		MaxSharedMemory:       uint32(d.max_shared_memory),
		MaxStorageBufferRange: uint64(d.max_storage_buffer_range),
		SubgroupSize:          uint32(d.subgroup_size),
		CopyMBps:              uint32(d.copy_mbps),
		FMAMFlops:             uint32(d.fma_mflops),
	}
}

// EvidenceInfo is what verified device evidence says.
type EvidenceInfo struct {
	// Challenge is the challenge the evidence answers.
	Challenge Nonce
	// PublicKey is the device key that signed the evidence: give it to
	// NewChainVerifier and VerifyReceipt.
	PublicKey PublicKey
	// KeyID is the key's id.
	KeyID KeyID
	// AgentVersion is the agent software's major, minor, patch.
	AgentVersion [3]uint16
	// BootID is the random id the agent chose at its boot.
	BootID [16]byte
	// IssuedAt is when the evidence was made, microseconds in the
	// provider's time base.
	IssuedAt uint64
	// Chain is the provider's receipt chain when the evidence was made:
	// where a verifier without history starts its chain verifier.
	Chain ChainState
	// Device is what the device is and can do.
	Device Device
	// EncKey is the provider's X25519 public key for this session, to
	// which requesters seal jobs; all zeros when it takes no sealed jobs.
	EncKey [32]byte
	// HardwareReport is the hardware attestation report the evidence
	// names (Kind HardwareReportNone: none).
	HardwareReport HardwareReport
}

// HardwareReportKind says what kind of hardware attestation report
// evidence names.
type HardwareReportKind uint16

// The kinds of hardware attestation report; 0x8000 and up are a vendor's
// own.
const (
	HardwareReportNone      HardwareReportKind = C.TESSERA_HARDWARE_REPORT_NONE
	HardwareReportNvidiaCC  HardwareReportKind = C.TESSERA_HARDWARE_REPORT_NVIDIA_CC
	HardwareReportTPM2Quote HardwareReportKind = C.TESSERA_HARDWARE_REPORT_TPM2_QUOTE
	HardwareReportSevSnp    HardwareReportKind = C.TESSERA_HARDWARE_REPORT_SEV_SNP
	HardwareReportTDX       HardwareReportKind = C.TESSERA_HARDWARE_REPORT_TDX
)

// HardwareReport is evidence's slot for a hardware attestation report: its
// kind and the SHA-256 of its bytes, which travel beside the evidence.
type HardwareReport struct {
	Kind HardwareReportKind
	Hash [32]byte
}

func evidenceFromC(in *C.tessera_evidence_info) *EvidenceInfo {
	return &EvidenceInfo{
		Challenge:    *(*Nonce)(unsafe.Pointer(&in.challenge[0])),
		PublicKey:    *(*PublicKey)(unsafe.Pointer(&in.public_key[0])),
		KeyID:        *(*KeyID)(unsafe.Pointer(&in.key_id[0])),
		AgentVersion: [3]uint16{uint16(in.agent_version[0]), uint16(in.agent_version[1]), uint16(in.agent_version[2])},
		BootID:       *(*[16]byte)(unsafe.Pointer(&in.boot_id[0])),
		IssuedAt:     uint64(in.issued_at),
		Chain:        chainFromC(&in.chain),
		Device:       deviceFromInfo(&in.device),
		EncKey:       *(*[32]byte)(unsafe.Pointer(&in.enc_key[0])),
		HardwareReport: HardwareReport{
			Kind: HardwareReportKind(in.hardware_report_kind),
			Hash: *(*[32]byte)(unsafe.Pointer(&in.hardware_report_hash[0])),
		},
	}
}

// VerifyEvidence verifies signed evidence: well formed, signed by the key it
// carries, and answering challenge, the one this verifier issued. Errors:
// ErrMalformed, ErrBadSignature, ErrUnknownKey (the header names another
// key than the payload), ErrWrongNonce (another challenge).
func VerifyEvidence(evidence []byte, challenge Nonce) (*EvidenceInfo, error) {
	var info C.tessera_evidence_info
	info.size = C.size_t(unsafe.Sizeof(info))
	r := C.tessera_evidence_verify(bytesPtr(evidence), C.size_t(len(evidence)), arrayPtr(challenge[:]), &info)
	runtime.KeepAlive(evidence)
	if err := check(r, "VerifyEvidence"); err != nil {
		return nil, err
	}
	return evidenceFromC(&info), nil
}

// OpenEvidence verifies evidence's form and signature only, for a third
// party that did not issue the challenge: Challenge says which challenge it
// answers, and the caller decides whether that is fresh. Errors as
// VerifyEvidence, without ErrWrongNonce.
func OpenEvidence(evidence []byte) (*EvidenceInfo, error) {
	var info C.tessera_evidence_info
	info.size = C.size_t(unsafe.Sizeof(info))
	r := C.tessera_evidence_open(bytesPtr(evidence), C.size_t(len(evidence)), &info)
	runtime.KeepAlive(evidence)
	if err := check(r, "OpenEvidence"); err != nil {
		return nil, err
	}
	return evidenceFromC(&info), nil
}

// EvidenceHash returns the hash receipts bind evidence by: SHA-256 of the
// signed bytes, whatever they are (nothing is verified).
func EvidenceHash(evidence []byte) Hash {
	var h Hash
	r := C.tessera_evidence_hash(bytesPtr(evidence), C.size_t(len(evidence)), arrayPtr(h[:]))
	runtime.KeepAlive(evidence)
	mustOK(r, "EvidenceHash")
	return h
}

// ReceiptStatus is how a job ended. Completed is 0; any other status is a
// failure numbered as the wire fail reason.
type ReceiptStatus uint32

// Receipt statuses.
const (
	ReceiptCompleted        ReceiptStatus = 0
	ReceiptKernelRejected   ReceiptStatus = 1
	ReceiptTimeout          ReceiptStatus = 2
	ReceiptDeadlineExceeded ReceiptStatus = 3
	ReceiptDeviceLost       ReceiptStatus = 4
	ReceiptOutOfMemory      ReceiptStatus = 5
	ReceiptInputIntegrity   ReceiptStatus = 6
	ReceiptHost             ReceiptStatus = 7
)

var receiptStatusNames = [...]string{
	"Completed",
	"Failed(KernelRejected)",
	"Failed(Timeout)",
	"Failed(DeadlineExceeded)",
	"Failed(DeviceLost)",
	"Failed(OutOfMemory)",
	"Failed(InputIntegrity)",
	"Failed(Host)",
}

// String names the status as PROTOCOL.md does ("Completed",
// "Failed(Timeout)").
func (s ReceiptStatus) String() string {
	if int(s) < len(receiptStatusNames) {
		return receiptStatusNames[s]
	}
	return "Failed(?)"
}

// Code returns the code of a failed job's status (2000 + the fail reason),
// or CodeOK for a completed one.
func (s ReceiptStatus) Code() Code {
	if s == ReceiptCompleted {
		return CodeOK
	}
	return Code(C.TESSERA_FAIL_BASE + uint32(s))
}

// Usage is the metered usage of a job.
type Usage struct {
	// GPUTimeMicros is the GPU time, in microseconds.
	GPUTimeMicros uint64
	// Dispatches is the number of dispatch commands submitted.
	Dispatches uint32
	// BytesIn is the bytes received (kernel and inputs).
	BytesIn uint64
	// BytesOut is the bytes returned (outputs).
	BytesOut uint64
}

func usageFromC(u *C.tessera_usage) Usage {
	return Usage{
		GPUTimeMicros: uint64(u.gpu_time_us),
		Dispatches:    uint32(u.dispatches),
		BytesIn:       uint64(u.bytes_in),
		BytesOut:      uint64(u.bytes_out),
	}
}

func (u Usage) toC() C.tessera_usage {
	return C.tessera_usage{
		gpu_time_us: C.uint64_t(u.GPUTimeMicros),
		dispatches:  C.uint32_t(u.Dispatches),
		bytes_in:    C.uint64_t(u.BytesIn),
		bytes_out:   C.uint64_t(u.BytesOut),
	}
}

// ReceiptInfo is what a verified receipt says.
type ReceiptInfo struct {
	// Status is how the job ended.
	Status ReceiptStatus
	// Job is the job's id.
	Job uint64
	// RequesterNonce is the requester's nonce from the assignment.
	RequesterNonce Nonce
	// KernelHash is what was dispatched (KernelHash).
	KernelHash Hash
	// InputRoot is the Merkle root over the input buffers' chunks.
	InputRoot Hash
	// OutputRoot is the Merkle root over the output buffers' chunks
	// (VerifyOutputChunk checks one chunk against it).
	OutputRoot Hash
	// OutputLen is the total of the output bytes.
	OutputLen uint64
	// ResultHash is the same on every honest replica (ResultHash).
	ResultHash Hash
	// ResultSeal is unique to the provider's key (ResultSeal).
	ResultSeal Hash
	// Usage is the metered usage.
	Usage Usage
	// Price is the price charged, in the network's smallest unit.
	Price uint64
	// StartedAt is when the job started, microseconds in the provider's
	// time base.
	StartedAt uint64
	// EndedAt is when the job ended, likewise.
	EndedAt uint64
	// EvidenceHash is the hash of the evidence of the session that offered
	// the job (EvidenceHash).
	EvidenceHash Hash
	// KeyID is the signing key's id.
	KeyID KeyID
	// Sequence is the receipt's position in the key's chain, from 1.
	Sequence uint64
	// PrevHash is the hash of the key's previous receipt (zeros for the
	// first).
	PrevHash Hash
}

func receiptFromC(in *C.tessera_receipt_info) *ReceiptInfo {
	hash := func(p *C.uint8_t) Hash { return *(*Hash)(unsafe.Pointer(p)) }
	return &ReceiptInfo{
		Status:         ReceiptStatus(in.status),
		Job:            uint64(in.job),
		RequesterNonce: *(*Nonce)(unsafe.Pointer(&in.requester_nonce[0])),
		KernelHash:     hash(&in.kernel_hash[0]),
		InputRoot:      hash(&in.input_root[0]),
		OutputRoot:     hash(&in.output_root[0]),
		OutputLen:      uint64(in.output_len),
		ResultHash:     hash(&in.result_hash[0]),
		ResultSeal:     hash(&in.result_seal[0]),
		Usage:          usageFromC(&in.usage),
		Price:          uint64(in.price),
		StartedAt:      uint64(in.started_at),
		EndedAt:        uint64(in.ended_at),
		EvidenceHash:   hash(&in.evidence_hash[0]),
		KeyID:          *(*KeyID)(unsafe.Pointer(&in.key_id[0])),
		Sequence:       uint64(in.sequence),
		PrevHash:       hash(&in.prev_hash[0]),
	}
}

// VerifyReceipt verifies one signed receipt's form and signature under
// publicKey, and that its payload names that key: signed alone (ReceiptLen
// bytes) or batched (509 to ReceiptMaxLen bytes, one signature over a batch
// of jobs). Its place in the chain is not checked: ChainVerifier does. Errors: ErrMalformed, ErrBadSignature,
// ErrUnknownKey.
func VerifyReceipt(receipt []byte, publicKey PublicKey) (*ReceiptInfo, error) {
	var info C.tessera_receipt_info
	info.size = C.size_t(unsafe.Sizeof(info))
	r := C.tessera_receipt_verify(bytesPtr(receipt), C.size_t(len(receipt)), arrayPtr(publicKey[:]), &info)
	runtime.KeepAlive(receipt)
	if err := check(r, "VerifyReceipt"); err != nil {
		return nil, err
	}
	return receiptFromC(&info), nil
}

// ReceiptHash returns the hash the next receipt of the chain names
// (PrevHash): SHA-256 of the signed bytes for a receipt signed alone, of its
// payload for a batched one (nothing is verified).
func ReceiptHash(receipt []byte) Hash {
	var h Hash
	r := C.tessera_receipt_hash(bytesPtr(receipt), C.size_t(len(receipt)), arrayPtr(h[:]))
	runtime.KeepAlive(receipt)
	mustOK(r, "ReceiptHash")
	return h
}

// ResultHash returns the result hash, the same on every honest replica of
// a job: over the kernel hash, the input and output roots and the output
// length.
func ResultHash(kernelHash, inputRoot, outputRoot Hash, outputLen uint64) Hash {
	var h Hash
	r := C.tessera_result_hash(arrayPtr(kernelHash[:]), arrayPtr(inputRoot[:]), arrayPtr(outputRoot[:]), C.uint64_t(outputLen), arrayPtr(h[:]))
	mustOK(r, "ResultHash")
	return h
}

// ResultSeal returns the result seal, unique to one provider: over its
// public key, the job and the result hash.
func ResultSeal(publicKey PublicKey, job uint64, resultHash Hash) Hash {
	var h Hash
	r := C.tessera_result_seal(arrayPtr(publicKey[:]), C.uint64_t(job), arrayPtr(resultHash[:]), arrayPtr(h[:]))
	mustOK(r, "ResultSeal")
	return h
}

// ChainVerifier checks one provider key's receipts in order: signature,
// key, sequence, previous-receipt hash and, when asked, the requester
// nonce. Keep one per provider key.
type ChainVerifier struct {
	g   callGuard
	ptr *C.tessera_chain_verifier
}

// NewChainVerifier returns a verifier of publicKey's receipts that expects
// the chain to continue from from: nil for a key that never signed, the
// evidence's Chain for a provider seen the first time, or what Chain
// returned before.
func NewChainVerifier(publicKey PublicKey, from *ChainState) (*ChainVerifier, error) {
	var chain *C.tessera_chain_state
	if from != nil {
		c := from.toC()
		chain = &c
	}
	var ptr *C.tessera_chain_verifier
	r := C.tessera_chain_verifier_new(arrayPtr(publicKey[:]), chain, &ptr)
	if err := check(r, "NewChainVerifier"); err != nil {
		return nil, err
	}
	v := &ChainVerifier{ptr: ptr}
	runtime.SetFinalizer(v, (*ChainVerifier).finalize)
	return v, nil
}

// VerifyNext verifies the next receipt of the chain; on success the chain
// advances. With expectedNonce (nil: any) the receipt must carry that
// requester nonce. Errors as VerifyReceipt, and ErrReplayed (a sequence
// already seen), ErrOutOfOrder (a receipt is missing), ErrBrokenChain (the
// previous-receipt hash differs), ErrWrongNonce; on error the chain stays
// where it was.
func (v *ChainVerifier) VerifyNext(receipt []byte, expectedNonce *Nonce) (*ReceiptInfo, error) {
	const op = "ChainVerifier.VerifyNext"
	if err := v.g.lock(op); err != nil {
		return nil, err
	}
	defer v.g.unlock()
	if v.ptr == nil {
		return nil, errClosed(op, "chain verifier closed")
	}
	var nonce *C.uint8_t
	var n Nonce
	if expectedNonce != nil {
		n = *expectedNonce
		nonce = arrayPtr(n[:])
	}
	var info C.tessera_receipt_info
	info.size = C.size_t(unsafe.Sizeof(info))
	r := C.tessera_chain_verifier_verify_next(v.ptr, bytesPtr(receipt), C.size_t(len(receipt)), nonce, &info)
	runtime.KeepAlive(receipt)
	runtime.KeepAlive(v)
	if err := check(r, op); err != nil {
		return nil, err
	}
	return receiptFromC(&info), nil
}

// Chain returns where the chain stands after the receipts verified so far:
// keep it to continue with a new verifier later.
func (v *ChainVerifier) Chain() (ChainState, error) {
	const op = "ChainVerifier.Chain"
	if err := v.g.lock(op); err != nil {
		return ChainState{}, err
	}
	defer v.g.unlock()
	if v.ptr == nil {
		return ChainState{}, errClosed(op, "chain verifier closed")
	}
	var c C.tessera_chain_state
	r := C.tessera_chain_verifier_chain(v.ptr, &c)
	runtime.KeepAlive(v)
	if err := check(r, op); err != nil {
		return ChainState{}, err
	}
	return chainFromC(&c), nil
}

// Close frees the verifier; a second Close does nothing.
func (v *ChainVerifier) Close() error {
	if err := v.g.lock("ChainVerifier.Close"); err != nil {
		return err
	}
	defer v.g.unlock()
	v.free()
	return nil
}

func (v *ChainVerifier) free() {
	if v.ptr != nil {
		C.tessera_chain_verifier_free(v.ptr)
		v.ptr = nil
	}
	runtime.SetFinalizer(v, nil)
}

func (v *ChainVerifier) finalize() {
	if v.ptr != nil {
		finalized.verifiers.Add(1)
	}
	v.free()
}

// MerkleRoot returns the Merkle root of data cut into ChunkSize chunks (the
// last may be shorter; no data: SHA-256 of nothing): the root of a kernel,
// or of a job's inputs or outputs when they are one buffer.
func MerkleRoot(data []byte) Hash {
	var h Hash
	r := C.tessera_merkle_root(bytesPtr(data), C.size_t(len(data)), arrayPtr(h[:]))
	runtime.KeepAlive(data)
	mustOK(r, "MerkleRoot")
	return h
}

// MerkleRootOfBuffers returns the Merkle root over buffers, each cut into
// chunks separately, leaves in buffer order: a job's input root is over its
// buffers' initial contents, its output root over its read-back buffers.
func MerkleRootOfBuffers(buffers [][]byte) Hash {
	var h Hash
	if len(buffers) == 0 {
		r := C.tessera_merkle_root_of_buffers(nil, nil, 0, arrayPtr(h[:]))
		mustOK(r, "MerkleRootOfBuffers")
		return h
	}
	// The array of pointers is Go memory holding Go pointers, which cgo
	// allows when each is pinned: the pinner keeps every buffer in place
	// until the call has returned.
	var pin runtime.Pinner
	defer pin.Unpin()
	ptrs := make([]*C.uint8_t, len(buffers))
	lens := make([]C.size_t, len(buffers))
	for i, b := range buffers {
		if len(b) > 0 {
			pin.Pin(&b[0])
			ptrs[i] = (*C.uint8_t)(unsafe.Pointer(&b[0]))
		}
		lens[i] = C.size_t(len(b))
	}
	r := C.tessera_merkle_root_of_buffers(&ptrs[0], &lens[0], C.size_t(len(buffers)), arrayPtr(h[:]))
	mustOK(r, "MerkleRootOfBuffers")
	return h
}

// MerkleLeafHash returns the leaf hash of one chunk: SHA-256(0x00 ‖ chunk).
func MerkleLeafHash(chunk []byte) Hash {
	var h Hash
	r := C.tessera_merkle_leaf_hash(bytesPtr(chunk), C.size_t(len(chunk)), arrayPtr(h[:]))
	runtime.KeepAlive(chunk)
	mustOK(r, "MerkleLeafHash")
	return h
}

// hashesPtr returns a pointer to the bytes of hashes (contiguous 32-byte
// arrays), as bytesPtr, for one call.
func hashesPtr(hashes []Hash) *C.uint8_t {
	if len(hashes) == 0 {
		return bytesPtr(nil)
	}
	return (*C.uint8_t)(unsafe.Pointer(&hashes[0][0]))
}

// MerkleProve returns the audit path of leaf index in the tree over leaves
// (leaf hashes, from MerkleLeafHash), leaf level first: what a provider or
// requester holding the whole output hands a verifier with one chunk.
// ErrInvalidArgument when index is not below len(leaves).
func MerkleProve(leaves []Hash, index uint64) ([]Hash, error) {
	path := make([]Hash, MaxProofLen)
	var n C.size_t
	r := C.tessera_merkle_prove(hashesPtr(leaves), C.size_t(len(leaves)), C.uint64_t(index), hashesPtr(path), C.size_t(len(path)), &n)
	runtime.KeepAlive(leaves)
	runtime.KeepAlive(path)
	if err := check(r, "MerkleProve"); err != nil {
		return nil, err
	}
	return path[:n:n], nil
}

// BufferSpec is one buffer of a job's layout.
type BufferSpec struct {
	// Binding is the buffer's binding in descriptor set 0.
	Binding uint32
	// Len is its size in bytes.
	Len uint64
	// InitLen is the bytes of initial contents sent as input (the rest is
	// zero).
	InitLen uint64
	// Readback says whether it is returned as an output.
	Readback bool
}

func buffersToC(buffers []BufferSpec) []C.tessera_buffer_spec {
	out := make([]C.tessera_buffer_spec, len(buffers))
	for i, b := range buffers {
		out[i] = C.tessera_buffer_spec{
			binding:  C.uint32_t(b.Binding),
			len:      C.uint64_t(b.Len),
			init_len: C.uint64_t(b.InitLen),
			readback: cBool(b.Readback),
		}
	}
	return out
}

func bufferSpecsPtr(specs []C.tessera_buffer_spec) *C.tessera_buffer_spec {
	if len(specs) == 0 {
		return nil
	}
	return &specs[0]
}

// OutputLeafCount returns the number of leaves of a job's output tree: the
// chunks of every read-back buffer of its layout, each cut separately. It
// is the exact tree size VerifyOutputChunk needs.
func OutputLeafCount(buffers []BufferSpec) (uint64, error) {
	specs := buffersToC(buffers)
	var n C.uint64_t
	r := C.tessera_output_leaf_count(bufferSpecsPtr(specs), C.size_t(len(specs)), &n)
	runtime.KeepAlive(specs)
	if err := check(r, "OutputLeafCount"); err != nil {
		return 0, err
	}
	return uint64(n), nil
}

// VerifyOutputChunk checks that chunk is leaf index of the output tree
// whose root a receipt signed, given its audit path in a tree of treeSize
// leaves. leafCount is the exact number of leaves of that output
// (OutputLeafCount of the job's layout): a proof for another tree size is
// refused. Errors: ErrChunkProofMismatch, ErrInvalidArgument for a path
// longer than MaxProofLen.
func VerifyOutputChunk(outputRoot Hash, leafCount uint64, chunk []byte, index, treeSize uint64, path []Hash) error {
	r := C.tessera_verify_output_chunk(arrayPtr(outputRoot[:]), C.uint64_t(leafCount),
		bytesPtr(chunk), C.size_t(len(chunk)), C.uint64_t(index), C.uint64_t(treeSize),
		hashesPtr(path), C.size_t(len(path)))
	runtime.KeepAlive(chunk)
	runtime.KeepAlive(path)
	return check(r, "VerifyOutputChunk")
}

// SpecConstant is one specialization constant of a kernel.
type SpecConstant struct {
	// ID is the constant's id in the module.
	ID uint32
	// Value is its value.
	Value uint32
}

func specToC(spec []SpecConstant) []C.uint32_t {
	out := make([]C.uint32_t, 0, 2*len(spec))
	for _, s := range spec {
		out = append(out, C.uint32_t(s.ID), C.uint32_t(s.Value))
	}
	return out
}

func u32Ptr(v []C.uint32_t) *C.uint32_t {
	if len(v) == 0 {
		return nil
	}
	return &v[0]
}

// KernelLayout is what a receipt's kernel hash binds: what was dispatched
// and on what buffers.
type KernelLayout struct {
	// SPIRVRoot is the Merkle root of the SPIR-V module (MerkleRoot).
	SPIRVRoot Hash
	// EntryPoint is the GLCompute entry point, at most MaxEntryPoint bytes.
	EntryPoint string
	// Specialization holds the specialization constants, at most
	// MaxSpecConstants.
	Specialization []SpecConstant
	// PushConstants holds the push-constant bytes, at most
	// MaxPushConstants.
	PushConstants []byte
	// Grid is the workgroup counts in x, y, z.
	Grid [3]uint32
	// Buffers is the buffer layout, at most MaxBuffers.
	Buffers []BufferSpec
}

// KernelHash returns the kernel hash a receipt binds. Anything past what a
// job assignment can carry is ErrInvalidArgument.
func KernelHash(k KernelLayout) (Hash, error) {
	var h Hash
	if err := noNUL("KernelHash", "EntryPoint", k.EntryPoint); err != nil {
		return h, err
	}
	entry := C.CString(k.EntryPoint)
	defer C.free(unsafe.Pointer(entry))
	spec := specToC(k.Specialization)
	specs := buffersToC(k.Buffers)
	grid := [3]C.uint32_t{C.uint32_t(k.Grid[0]), C.uint32_t(k.Grid[1]), C.uint32_t(k.Grid[2])}
	r := C.tessera_kernel_hash(arrayPtr(k.SPIRVRoot[:]), entry,
		u32Ptr(spec), C.size_t(len(k.Specialization)),
		bytesPtr(k.PushConstants), C.size_t(len(k.PushConstants)),
		&grid[0], bufferSpecsPtr(specs), C.size_t(len(specs)), arrayPtr(h[:]))
	runtime.KeepAlive(spec)
	runtime.KeepAlive(specs)
	runtime.KeepAlive(k.PushConstants)
	if err := check(r, "KernelHash"); err != nil {
		return Hash{}, err
	}
	return h, nil
}
