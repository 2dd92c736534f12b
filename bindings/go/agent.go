package tessera

/*
#include <stdlib.h>
#include <tessera.h>
*/
import "C"

import (
	"runtime"
	"time"
	"unsafe"
)

// Policy says which offers to take, what to charge, and the session
// timers.
type Policy struct {
	// MaxConcurrent is the jobs held at once, 1 to MaxJobs.
	MaxConcurrent uint32
	// PriceBase is the fixed fee per job.
	PriceBase uint64
	// PricePerGPUMs is the price per GPU millisecond.
	PricePerGPUMs uint64
	// PricePerMiBIn is the price per MiB received.
	PricePerMiBIn uint64
	// PricePerMiBOut is the price per MiB returned.
	PricePerMiBOut uint64
	// Floor is the least charged for any job.
	Floor uint64
	// MaxBytesIn is the most bytes received for one job.
	MaxBytesIn uint64
	// MaxBytesOut is the most bytes returned for one job.
	MaxBytesOut uint64
	// HeartbeatInterval is the heartbeat interval (unless the coordinator
	// asks another), in whole milliseconds.
	HeartbeatInterval time.Duration
	// PeerTimeout is the silence after which the coordinator is given up,
	// in whole milliseconds.
	PeerTimeout time.Duration
}

func policyFromC(p *C.tessera_policy) Policy {
	return Policy{
		MaxConcurrent:     uint32(p.max_concurrent),
		PriceBase:         uint64(p.price_base),
		PricePerGPUMs:     uint64(p.price_per_gpu_ms),
		PricePerMiBIn:     uint64(p.price_per_mib_in),
		PricePerMiBOut:    uint64(p.price_per_mib_out),
		Floor:             uint64(p.floor),
		MaxBytesIn:        uint64(p.max_bytes_in),
		MaxBytesOut:       uint64(p.max_bytes_out),
		HeartbeatInterval: time.Duration(p.heartbeat_interval_ms) * time.Millisecond,
		PeerTimeout:       time.Duration(p.peer_timeout_ms) * time.Millisecond,
	}
}

func (p Policy) toC() C.tessera_policy {
	return C.tessera_policy{
		max_concurrent:        C.uint32_t(p.MaxConcurrent),
		price_base:            C.uint64_t(p.PriceBase),
		price_per_gpu_ms:      C.uint64_t(p.PricePerGPUMs),
		price_per_mib_in:      C.uint64_t(p.PricePerMiBIn),
		price_per_mib_out:     C.uint64_t(p.PricePerMiBOut),
		floor:                 C.uint64_t(p.Floor),
		max_bytes_in:          C.uint64_t(p.MaxBytesIn),
		max_bytes_out:         C.uint64_t(p.MaxBytesOut),
		heartbeat_interval_ms: C.uint64_t(p.HeartbeatInterval / time.Millisecond),
		peer_timeout_ms:       C.uint64_t(p.PeerTimeout / time.Millisecond),
	}
}

// AgentConfig is an agent's configuration. Start from DefaultAgentConfig
// and change what differs.
type AgentConfig struct {
	// AgentVersion is the agent software's major, minor, patch.
	AgentVersion [3]uint16
	// BootID is a random id chosen at each boot (the host supplies the
	// randomness).
	BootID [16]byte
	// Device is what the device is (signed into the evidence).
	Device Device
	// Policy holds offers, prices and timers.
	Policy Policy
	// PersistResults holds each signed result back until the host stored
	// it (EventPersistResult, then ConfirmPersisted).
	PersistResults bool
}

// DefaultAgentConfig returns the library's defaults: its own version, a
// zero boot id (set a random one), an empty device, the default policy.
func DefaultAgentConfig() AgentConfig {
	var c C.tessera_agent_config
	mustOK(C.tessera_agent_config_default(&c), "DefaultAgentConfig")
	return AgentConfig{
		AgentVersion: [3]uint16{uint16(c.agent_version[0]), uint16(c.agent_version[1]), uint16(c.agent_version[2])},
		Device:       Device{Type: DeviceType(c.device.device_type)},
		Policy:       policyFromC(&c.policy),
	}
}

func c3(a [3]uint32) [3]C.uint32_t {
	return [3]C.uint32_t{C.uint32_t(a[0]), C.uint32_t(a[1]), C.uint32_t(a[2])}
}

// toC fills a C configuration; its strings are added to strs.
func (c *AgentConfig) toC(strs *cStrings) C.tessera_agent_config {
	var out C.tessera_agent_config
	mustOK(C.tessera_agent_config_default(&out), "DefaultAgentConfig")
	for i, v := range c.AgentVersion {
		out.agent_version[i] = C.uint16_t(v)
	}
	*(*[16]byte)(unsafe.Pointer(&out.boot_id[0])) = c.BootID
	d := &c.Device
	out.device = C.tessera_device{
		name:                     strs.add(d.Name),
		vendor_id:                C.uint32_t(d.VendorID),
		device_id:                C.uint32_t(d.DeviceID),
		driver_version:           C.uint32_t(d.DriverVersion),
		api_version:              C.uint32_t(d.APIVersion),
		device_type:              C.uint32_t(d.Type),
		features:                 C.uint32_t(d.Features),
		device_local_bytes:       C.uint64_t(d.DeviceLocalBytes),
		host_visible_bytes:       C.uint64_t(d.HostVisibleBytes),
		max_workgroup_size:       c3(d.MaxWorkgroupSize),
		max_workgroup_count:      c3(d.MaxWorkgroupCount),
		max_invocations:          C.uint32_t(d.MaxInvocations),
		max_shared_memory:        C.uint32_t(d.MaxSharedMemory),
		max_storage_buffer_range: C.uint64_t(d.MaxStorageBufferRange),
		subgroup_size:            C.uint32_t(d.SubgroupSize),
		copy_mbps:                C.uint32_t(d.CopyMBps),
		fma_mflops:               C.uint32_t(d.FMAMFlops),
	}
	out.policy = c.Policy.toC()
	out.persist_results = cBool(c.PersistResults)
	return out
}

// EventKind is what the host must do about an Event.
type EventKind uint32

// Event kinds.
const (
	// EventReady: the session is established.
	EventReady EventKind = 1
	// EventJobAssigned: a job was assigned: prepare its buffers (JobInfo,
	// JobLayout).
	EventJobAssigned EventKind = 2
	// EventJobData: Len bytes (at most MaxInputPiece) of stream Stream at
	// Offset: read them with ReadInput before the next HandleInput. A
	// chunk's data comes in several pieces, checked against its digest when
	// the last one arrives: data that fails ends the job with
	// EventCancelJob (CancelInputIntegrity) instead of its last piece, so
	// the inputs are known good only at EventRunJob.
	EventJobData EventKind = 3
	// EventRunJob: all inputs arrived and verified: run the kernel.
	EventRunJob EventKind = 4
	// EventCancelJob: stop the job and drop its buffers; Reason is a
	// Cancel* reason, Code the coordinator's for CancelRequested.
	EventCancelJob EventKind = 5
	// EventResendOutputs: write the job's outputs again, then finish it.
	EventResendOutputs EventKind = 6
	// EventPersistResult: store ResultRecord durably, then ConfirmPersisted.
	EventPersistResult EventKind = 7
	// EventResultAcknowledged: the coordinator holds the result: the host
	// may drop the outputs.
	EventResultAcknowledged EventKind = 8
	// EventResultRefused: the coordinator refused the result (Code: its
	// reason); drop it.
	EventResultRefused EventKind = 9
	// EventPeerError: the coordinator reported an error (Code: the wire
	// error code).
	EventPeerError EventKind = 10
	// EventDisconnect: close the transport; Reason is a Disconnect* reason.
	EventDisconnect EventKind = 11
)

var eventNames = map[EventKind]string{
	EventReady:              "Ready",
	EventJobAssigned:        "JobAssigned",
	EventJobData:            "JobData",
	EventRunJob:             "RunJob",
	EventCancelJob:          "CancelJob",
	EventResendOutputs:      "ResendOutputs",
	EventPersistResult:      "PersistResult",
	EventResultAcknowledged: "ResultAcknowledged",
	EventResultRefused:      "ResultRefused",
	EventPeerError:          "PeerError",
	EventDisconnect:         "Disconnect",
}

// String names the kind.
func (k EventKind) String() string {
	if s, ok := eventNames[k]; ok {
		return s
	}
	return "unknown event"
}

// Reasons of EventCancelJob.
const (
	// CancelRequested: the coordinator cancelled the job.
	CancelRequested uint32 = 1
	// CancelDeadline: the job's deadline passed.
	CancelDeadline uint32 = 2
	// CancelDisconnected: the connection dropped before the inputs were
	// complete.
	CancelDisconnected uint32 = 3
	// CancelInputIntegrity: an input did not match its digest.
	CancelInputIntegrity uint32 = 4
)

// Reasons of EventDisconnect.
const (
	// DisconnectPeerSilent: nothing heard from the coordinator in time.
	DisconnectPeerSilent uint32 = 1
	// DisconnectProtocolViolation: the peer broke the protocol beyond
	// recovery.
	DisconnectProtocolViolation uint32 = 2
	// DisconnectRefused: the coordinator refused the session.
	DisconnectRefused uint32 = 3
	// DisconnectPeerGoodbye: the coordinator said goodbye.
	DisconnectPeerGoodbye uint32 = 4
	// DisconnectDrained: drained, as the host asked.
	DisconnectDrained uint32 = 5
	// DisconnectPeerDrained: drained, as the coordinator asked; connect
	// again later.
	DisconnectPeerDrained uint32 = 6
)

// Event is something the host must act on (Agent.PollEvent). Fields other
// than Kind and Job are set only for the kinds that say so.
type Event struct {
	// Kind is what happened.
	Kind EventKind
	// Job is the job, or 0.
	Job uint64
	// Stream is, for EventJobData, 0 for the kernel and i+1 for buffer i.
	Stream uint32
	// Offset is, for EventJobData, the byte offset in the stream.
	Offset uint64
	// Len is, for EventJobData, the bytes ReadInput returns (at most
	// MaxInputPiece).
	Len int
	// Reason is a Cancel* or Disconnect* reason.
	Reason uint32
	// Code is the peer's code, for the kinds that carry one.
	Code uint32
}

// ConnState is the state of the agent's connection.
type ConnState uint32

// Connection states.
const (
	// ConnDisconnected: no transport.
	ConnDisconnected ConnState = 1
	// ConnAwaitingWelcome: Hello sent, waiting for Welcome.
	ConnAwaitingWelcome ConnState = 2
	// ConnAwaitingReady: evidence sent, waiting for Ready.
	ConnAwaitingReady ConnState = 3
	// ConnReady: the session is established.
	ConnReady ConnState = 4
	// ConnClosed: goodbye exchanged.
	ConnClosed ConnState = 5
)

// String names the state.
func (s ConnState) String() string {
	switch s {
	case ConnDisconnected:
		return "disconnected"
	case ConnAwaitingWelcome:
		return "awaiting welcome"
	case ConnAwaitingReady:
		return "awaiting ready"
	case ConnReady:
		return "ready"
	case ConnClosed:
		return "closed"
	}
	return "unknown state"
}

// JobState is where a job stands.
type JobState uint32

// Job states.
const (
	// JobAccepted: offer accepted, waiting for the assignment.
	JobAccepted JobState = 1
	// JobReceiving: kernel and inputs arriving.
	JobReceiving JobState = 2
	// JobRunning: inputs verified; the host runs the kernel.
	JobRunning JobState = 3
	// JobUploading: the host writes outputs.
	JobUploading JobState = 4
	// JobAwaitingAck: signed; waiting for the coordinator's
	// acknowledgement.
	JobAwaitingAck JobState = 5
)

// JobInfo is what the agent knows of a job.
type JobInfo struct {
	// State is where the job stands.
	State JobState
	// HasDeadline says whether the job has a deadline now.
	HasDeadline bool
	// DeadlineMicros is the deadline, in the host's time base.
	DeadlineMicros uint64
	// Assigned says whether the assignment arrived (the fields below are
	// set).
	Assigned bool
	// KernelLen is the SPIR-V bytes (stream 0).
	KernelLen uint32
	// Grid is the workgroup counts in x, y, z.
	Grid [3]uint32
	// BufferCount is the number of buffers.
	BufferCount uint32
	// SpecializationCount is the number of specialization constants.
	SpecializationCount uint32
	// PushConstantsLen is the push-constant bytes.
	PushConstantsLen uint32
	// EntryPointLen is the entry point's bytes.
	EntryPointLen uint32
	// RequesterNonce is the requester's nonce.
	RequesterNonce Nonce
}

// Stats holds the counters an operator reads.
type Stats struct {
	OffersAccepted uint64 // offers accepted
	OffersDeclined uint64 // offers declined
	JobsCompleted  uint64 // jobs completed and acknowledged
	JobsFailed     uint64 // jobs failed (acknowledged)
	ResultsRefused uint64 // results the coordinator refused
	Earnings       uint64 // sum of the prices of acknowledged completed jobs
	FramesIn       uint64 // frames received
	FramesOut      uint64 // frames queued for sending
	FramesRefused  uint64 // frames refused
}

// Agent is the provider agent, sans-IO: the host opens the transport,
// feeds it received bytes and the time (microseconds in the host's own
// monotonic time base), sends what it polls, and acts on its events.
type Agent struct {
	g     *callGuard // apart from the Agent: the KeyStore's handle reaches it
	ptr   *C.tessera_agent
	state *keyStoreState // the signer's KeyStore, if it has one
	h     signerHandles  // the signer's callbacks' handles, deleted with the agent
}

// NewAgent makes an agent signing with signer, which it takes over (also
// when it fails: do not use signer afterwards). chain is where the key's
// receipt chain stands (nil for a key that never signed). A configuration
// error is ErrInvalidConfig with the field named in its Detail.
func NewAgent(config AgentConfig, signer *Signer, chain *ChainState) (*Agent, error) {
	const op = "NewAgent"
	a := &Agent{g: &callGuard{}}
	// The signer is taken first, as the library takes it: whatever fails
	// next, it is gone.
	sptr, state, h, err := signer.take(op, a.g)
	if err != nil {
		return nil, err
	}
	if err := noNUL(op, "Device.Name", config.Device.Name); err != nil {
		C.tessera_signer_free(sptr)
		h.delete()
		return nil, err
	}
	var strs cStrings
	defer strs.free()
	c := config.toC(&strs)
	var cchain *C.tessera_chain_state
	if chain != nil {
		cc := chain.toC()
		cchain = &cc
	}
	var why [256]C.char
	r := C.tessera_agent_new(&c, sptr, cchain, &why[0], C.size_t(len(why)), &a.ptr)
	if r != C.TESSERA_OK {
		e := &Error{Code: Code(r), Op: op, Detail: cText(why[:])}
		if state != nil {
			if cause := state.takeErr(); cause != nil && e.Detail == "" {
				e.Detail = cause.Error()
			}
		}
		h.delete()
		return nil, e
	}
	a.state, a.h = state, h
	runtime.SetFinalizer(a, (*Agent).finalize)
	return a, nil
}

// begin takes the agent for one call.
func (a *Agent) begin(op string) error {
	if err := a.g.lock(op); err != nil {
		return err
	}
	if a.ptr == nil {
		a.g.unlock()
		return errClosed(op, "agent closed")
	}
	return nil
}

// end releases the agent after one call and turns its result into an error
// with the agent's words (and the KeyStore's, when it failed).
func (a *Agent) end(r C.tessera_result, op string) error {
	defer a.g.unlock()
	defer runtime.KeepAlive(a)
	if r == C.TESSERA_OK {
		return nil
	}
	e := &Error{Code: Code(r), Op: op}
	if r != C.TESSERA_NOTHING {
		var buf [512]C.char
		if C.tessera_agent_last_error(a.ptr, &buf[0], C.size_t(len(buf)), nil) == C.TESSERA_OK {
			e.Detail = cText(buf[:])
		}
	}
	if a.state != nil {
		if cause := a.state.takeErr(); cause != nil {
			if e.Detail != "" {
				e.Detail += ": "
			}
			e.Detail += cause.Error()
		}
	}
	return e
}

// Connect opens a session on a transport the host just connected: it
// queues Hello.
func (a *Agent) Connect(nowMicros uint64) error {
	const op = "Agent.Connect"
	if err := a.begin(op); err != nil {
		return err
	}
	return a.end(C.tessera_agent_connect(a.ptr, C.uint64_t(nowMicros)), op)
}

// Disconnected tells the agent the transport closed (or failed). Jobs keep
// running; results wait for the next session.
func (a *Agent) Disconnected(nowMicros uint64) error {
	const op = "Agent.Disconnected"
	if err := a.begin(op); err != nil {
		return err
	}
	return a.end(C.tessera_agent_disconnected(a.ptr, C.uint64_t(nowMicros)), op)
}

// HandleInput feeds received bytes and returns how many were taken, also
// on error: pass the rest again later (after draining events when fewer
// were taken than given). A protocol violation by the peer is an error of
// ClassPeer, after an Error frame was queued for the peer.
func (a *Agent) HandleInput(nowMicros uint64, data []byte) (int, error) {
	const op = "Agent.HandleInput"
	if err := a.begin(op); err != nil {
		return 0, err
	}
	var n C.size_t
	r := C.tessera_agent_handle_input(a.ptr, C.uint64_t(nowMicros), bytesPtr(data), C.size_t(len(data)), &n)
	runtime.KeepAlive(data)
	return int(n), a.end(r, op)
}

// PollTransmit writes the next bytes to send into buf and returns their
// length; 0 when there is nothing to send. A buf of MaxFrame bytes always
// makes progress (a smaller one may get ErrBufferTooSmall).
func (a *Agent) PollTransmit(nowMicros uint64, buf []byte) (int, error) {
	const op = "Agent.PollTransmit"
	if err := a.begin(op); err != nil {
		return 0, err
	}
	var n C.size_t
	r := C.tessera_agent_poll_transmit(a.ptr, C.uint64_t(nowMicros), bytesPtr(buf), C.size_t(len(buf)), &n)
	runtime.KeepAlive(buf)
	if r == C.TESSERA_NOTHING {
		a.end(C.TESSERA_OK, op)
		return 0, nil
	}
	return int(n), a.end(r, op)
}

// PollEvent returns the next event, and false when there is none.
func (a *Agent) PollEvent() (Event, bool, error) {
	const op = "Agent.PollEvent"
	if err := a.begin(op); err != nil {
		return Event{}, false, err
	}
	var ev C.tessera_event
	ev.size = C.size_t(unsafe.Sizeof(ev))
	r := C.tessera_agent_poll_event(a.ptr, &ev)
	if r == C.TESSERA_NOTHING {
		a.end(C.TESSERA_OK, op)
		return Event{}, false, nil
	}
	if err := a.end(r, op); err != nil {
		return Event{}, false, err
	}
	return Event{
		Kind:   EventKind(ev.kind),
		Job:    uint64(ev.job),
		Stream: uint32(ev.stream),
		Offset: uint64(ev.offset),
		Len:    int(ev.len),
		Reason: uint32(ev.reason),
		Code:   uint32(ev.code),
	}, true, nil
}

// PollTimeout returns when HandleTimeout is next due (microseconds, the
// host's time base), and false when no timer runs.
func (a *Agent) PollTimeout() (uint64, bool, error) {
	const op = "Agent.PollTimeout"
	if err := a.begin(op); err != nil {
		return 0, false, err
	}
	var at C.uint64_t
	r := C.tessera_agent_poll_timeout(a.ptr, &at)
	if r == C.TESSERA_NOTHING {
		a.end(C.TESSERA_OK, op)
		return 0, false, nil
	}
	if err := a.end(r, op); err != nil {
		return 0, false, err
	}
	return uint64(at), true, nil
}

// HandleTimeout runs the timers due at nowMicros (heartbeats, peer
// silence, deadlines).
func (a *Agent) HandleTimeout(nowMicros uint64) error {
	const op = "Agent.HandleTimeout"
	if err := a.begin(op); err != nil {
		return err
	}
	return a.end(C.tessera_agent_handle_timeout(a.ptr, C.uint64_t(nowMicros)), op)
}

// ReadInput copies the input piece of the last EventJobData polled for job
// into buf and returns its length (a buf of MaxInputPiece bytes always
// suffices). ErrNoInput once HandleInput was called again.
func (a *Agent) ReadInput(job uint64, buf []byte) (int, error) {
	const op = "Agent.ReadInput"
	if err := a.begin(op); err != nil {
		return 0, err
	}
	var n C.size_t
	r := C.tessera_agent_read_input(a.ptr, C.uint64_t(job), bytesPtr(buf), C.size_t(len(buf)), &n)
	runtime.KeepAlive(buf)
	if err := a.end(r, op); err != nil {
		return 0, err
	}
	return int(n), nil
}

// JobInfo returns what the agent knows of job.
func (a *Agent) JobInfo(job uint64) (JobInfo, error) {
	const op = "Agent.JobInfo"
	if err := a.begin(op); err != nil {
		return JobInfo{}, err
	}
	var in C.tessera_job_info
	in.size = C.size_t(unsafe.Sizeof(in))
	r := C.tessera_agent_job_info(a.ptr, C.uint64_t(job), &in)
	if err := a.end(r, op); err != nil {
		return JobInfo{}, err
	}
	return JobInfo{
		State:               JobState(in.state),
		HasDeadline:         bool(in.has_deadline),
		DeadlineMicros:      uint64(in.deadline_us),
		Assigned:            bool(in.assigned),
		KernelLen:           uint32(in.kernel_len),
		Grid:                array3(in.grid),
		BufferCount:         uint32(in.buffer_count),
		SpecializationCount: uint32(in.specialization_count),
		PushConstantsLen:    uint32(in.push_constants_len),
		EntryPointLen:       uint32(in.entry_point_len),
		RequesterNonce:      *(*Nonce)(unsafe.Pointer(&in.requester_nonce[0])),
	}, nil
}

// JobBuffer returns buffer index of an assigned job.
func (a *Agent) JobBuffer(job uint64, index uint32) (BufferSpec, error) {
	const op = "Agent.JobBuffer"
	if err := a.begin(op); err != nil {
		return BufferSpec{}, err
	}
	var b C.tessera_buffer_spec
	r := C.tessera_agent_job_buffer(a.ptr, C.uint64_t(job), C.uint32_t(index), &b)
	if err := a.end(r, op); err != nil {
		return BufferSpec{}, err
	}
	return BufferSpec{Binding: uint32(b.binding), Len: uint64(b.len), InitLen: uint64(b.init_len), Readback: bool(b.readback)}, nil
}

// JobSpecialization returns specialization constant index of an assigned
// job.
func (a *Agent) JobSpecialization(job uint64, index uint32) (SpecConstant, error) {
	const op = "Agent.JobSpecialization"
	if err := a.begin(op); err != nil {
		return SpecConstant{}, err
	}
	var id, value C.uint32_t
	r := C.tessera_agent_job_specialization(a.ptr, C.uint64_t(job), C.uint32_t(index), &id, &value)
	if err := a.end(r, op); err != nil {
		return SpecConstant{}, err
	}
	return SpecConstant{ID: uint32(id), Value: uint32(value)}, nil
}

// JobPushConstants returns an assigned job's push constants.
func (a *Agent) JobPushConstants(job uint64) ([]byte, error) {
	const op = "Agent.JobPushConstants"
	if err := a.begin(op); err != nil {
		return nil, err
	}
	buf := make([]byte, MaxPushConstants)
	var n C.size_t
	r := C.tessera_agent_job_push_constants(a.ptr, C.uint64_t(job), bytesPtr(buf), C.size_t(len(buf)), &n)
	runtime.KeepAlive(buf)
	if err := a.end(r, op); err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// JobEntryPoint returns an assigned job's entry point. A name holding a
// NUL byte is a kernel rejection (ClassKernelRejected): fail the job with
// ReceiptKernelRejected and the rule as detail.
func (a *Agent) JobEntryPoint(job uint64) (string, error) {
	const op = "Agent.JobEntryPoint"
	if err := a.begin(op); err != nil {
		return "", err
	}
	var buf [C.TESSERA_MAX_ENTRY_POINT + 1]C.char
	r := C.tessera_agent_job_entry_point(a.ptr, C.uint64_t(job), &buf[0], C.size_t(len(buf)), nil)
	if err := a.end(r, op); err != nil {
		return "", err
	}
	return cText(buf[:]), nil
}

// JobLayout returns what an assigned job dispatches: entry point,
// specialization, push constants, grid and buffers. Its SPIRVRoot is left
// zero: the host computes it (MerkleRoot) from the kernel bytes it
// received.
func (a *Agent) JobLayout(job uint64) (KernelLayout, error) {
	info, err := a.JobInfo(job)
	if err != nil {
		return KernelLayout{}, err
	}
	if !info.Assigned {
		return KernelLayout{}, &Error{Code: CodeInvalidJobState, Op: "Agent.JobLayout", Detail: "the job is not assigned yet"}
	}
	k := KernelLayout{Grid: info.Grid}
	if k.EntryPoint, err = a.JobEntryPoint(job); err != nil {
		return KernelLayout{}, err
	}
	if k.PushConstants, err = a.JobPushConstants(job); err != nil {
		return KernelLayout{}, err
	}
	for i := uint32(0); i < info.SpecializationCount; i++ {
		s, err := a.JobSpecialization(job, i)
		if err != nil {
			return KernelLayout{}, err
		}
		k.Specialization = append(k.Specialization, s)
	}
	for i := uint32(0); i < info.BufferCount; i++ {
		b, err := a.JobBuffer(job, i)
		if err != nil {
			return KernelLayout{}, err
		}
		k.Buffers = append(k.Buffers, b)
	}
	return k, nil
}

// SendOutput takes the next bytes of read-back buffer buffer of a job that
// ran and writes their frames into out: first the frames already queued
// (as PollTransmit would), then one output chunk frame per whole chunk (or
// the buffer's tail) that fits. Send out[:written] before anything polled
// after. taken is 0 when out had no room for the next chunk's frame: send
// what was written and call again with the same bytes. An out of
// TransmitBuffer bytes takes a chunk at every call, one of MaxFrame bytes
// always makes progress; one that can never hold the next frame gets
// ErrBufferTooSmall. While no session is up the bytes are taken and
// nothing is written (EventResendOutputs asks for them again). Buffers
// are written in order, each from its start to its end.
func (a *Agent) SendOutput(nowMicros, job uint64, buffer uint32, data, out []byte) (taken, written int, err error) {
	const op = "Agent.SendOutput"
	if err := a.begin(op); err != nil {
		return 0, 0, err
	}
	var t, w C.size_t
	r := C.tessera_agent_send_output(a.ptr, C.uint64_t(nowMicros), C.uint64_t(job), C.uint32_t(buffer),
		bytesPtr(data), C.size_t(len(data)), bytesPtr(out), C.size_t(len(out)), &t, &w)
	runtime.KeepAlive(data)
	runtime.KeepAlive(out)
	if err := a.end(r, op); err != nil {
		return 0, 0, err
	}
	return int(t), int(w), nil
}

// FinishJob ends a job whose outputs were all written: it signs the
// receipt.
func (a *Agent) FinishJob(nowMicros, job uint64, usage Usage) error {
	const op = "Agent.FinishJob"
	if err := a.begin(op); err != nil {
		return err
	}
	u := usage.toC()
	return a.end(C.tessera_agent_finish_job(a.ptr, C.uint64_t(nowMicros), C.uint64_t(job), &u), op)
}

// FailJob ends a job that could not run: reason is the failure status
// (ReceiptKernelRejected … ReceiptHost), detail its detail (the kernel rule
// for a rejection).
func (a *Agent) FailJob(nowMicros, job uint64, reason ReceiptStatus, detail uint32, usage Usage) error {
	const op = "Agent.FailJob"
	if err := a.begin(op); err != nil {
		return err
	}
	u := usage.toC()
	return a.end(C.tessera_agent_fail_job(a.ptr, C.uint64_t(nowMicros), C.uint64_t(job), C.uint32_t(reason), C.uint32_t(detail), &u), op)
}

// ReportProgress reports a running job's progress, in thousandths.
func (a *Agent) ReportProgress(nowMicros, job uint64, permille uint32) error {
	const op = "Agent.ReportProgress"
	if err := a.begin(op); err != nil {
		return err
	}
	return a.end(C.tessera_agent_report_progress(a.ptr, C.uint64_t(nowMicros), C.uint64_t(job), C.uint32_t(permille)), op)
}

// ConfirmPersisted says the host stored the job's result record durably
// (after EventPersistResult): the agent may send it.
func (a *Agent) ConfirmPersisted(nowMicros, job uint64) error {
	const op = "Agent.ConfirmPersisted"
	if err := a.begin(op); err != nil {
		return err
	}
	return a.end(C.tessera_agent_confirm_persisted(a.ptr, C.uint64_t(nowMicros), C.uint64_t(job)), op)
}

// Drain takes no more offers and says goodbye once every held job is
// acknowledged.
func (a *Agent) Drain(nowMicros uint64) error {
	const op = "Agent.Drain"
	if err := a.begin(op); err != nil {
		return err
	}
	return a.end(C.tessera_agent_drain(a.ptr, C.uint64_t(nowMicros)), op)
}

// SetDeviceAvailable says whether the device takes work now (a render
// engine says no while its user renders): offers are declined while it
// does not.
func (a *Agent) SetDeviceAvailable(nowMicros uint64, available bool) error {
	const op = "Agent.SetDeviceAvailable"
	if err := a.begin(op); err != nil {
		return err
	}
	return a.end(C.tessera_agent_set_device_available(a.ptr, C.uint64_t(nowMicros), cBool(available)), op)
}

// State returns the connection state.
func (a *Agent) State() (ConnState, error) {
	const op = "Agent.State"
	if err := a.begin(op); err != nil {
		return 0, err
	}
	var s C.uint32_t
	r := C.tessera_agent_state(a.ptr, &s)
	return ConnState(s), a.end(r, op)
}

// Chain returns where the receipt chain stands: keep it across restarts
// and give it to the next NewAgent.
func (a *Agent) Chain() (ChainState, error) {
	const op = "Agent.Chain"
	if err := a.begin(op); err != nil {
		return ChainState{}, err
	}
	var c C.tessera_chain_state
	r := C.tessera_agent_chain(a.ptr, &c)
	if err := a.end(r, op); err != nil {
		return ChainState{}, err
	}
	return chainFromC(&c), nil
}

// Stats returns the agent's counters.
func (a *Agent) Stats() (Stats, error) {
	const op = "Agent.Stats"
	if err := a.begin(op); err != nil {
		return Stats{}, err
	}
	var s C.tessera_stats
	s.size = C.size_t(unsafe.Sizeof(s))
	r := C.tessera_agent_stats(a.ptr, &s)
	if err := a.end(r, op); err != nil {
		return Stats{}, err
	}
	return Stats{
		OffersAccepted: uint64(s.offers_accepted),
		OffersDeclined: uint64(s.offers_declined),
		JobsCompleted:  uint64(s.jobs_completed),
		JobsFailed:     uint64(s.jobs_failed),
		ResultsRefused: uint64(s.results_refused),
		Earnings:       uint64(s.earnings),
		FramesIn:       uint64(s.frames_in),
		FramesOut:      uint64(s.frames_out),
		FramesRefused:  uint64(s.frames_refused),
	}, nil
}

// KeyID returns the id of the agent's key.
func (a *Agent) KeyID() (KeyID, error) {
	const op = "Agent.KeyID"
	if err := a.begin(op); err != nil {
		return KeyID{}, err
	}
	var id KeyID
	r := C.tessera_agent_key_id(a.ptr, arrayPtr(id[:]))
	return id, a.end(r, op)
}

// ResultRecord returns a signed job's result record: what to store on
// EventPersistResult (at most MaxRecordBytes).
func (a *Agent) ResultRecord(job uint64) ([]byte, error) {
	const op = "Agent.ResultRecord"
	if err := a.begin(op); err != nil {
		return nil, err
	}
	buf := make([]byte, MaxRecordBytes)
	var n C.size_t
	r := C.tessera_agent_result_record(a.ptr, C.uint64_t(job), bytesPtr(buf), C.size_t(len(buf)), &n)
	runtime.KeepAlive(buf)
	if err := a.end(r, op); err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// RestoreResult gives back a result record stored before a restart: the
// agent holds the job again (its outputs are asked for with
// EventResendOutputs at the next session).
func (a *Agent) RestoreResult(record []byte) error {
	const op = "Agent.RestoreResult"
	if err := a.begin(op); err != nil {
		return err
	}
	r := C.tessera_agent_restore_result(a.ptr, bytesPtr(record), C.size_t(len(record)))
	runtime.KeepAlive(record)
	return a.end(r, op)
}

// LastError returns the agent's words for the last error a call on it
// returned (the errors of its methods carry them already).
func (a *Agent) LastError() (string, error) {
	const op = "Agent.LastError"
	if err := a.begin(op); err != nil {
		return "", err
	}
	var need C.size_t
	C.tessera_agent_last_error(a.ptr, nil, 0, &need)
	buf := make([]C.char, need+1)
	r := C.tessera_agent_last_error(a.ptr, &buf[0], C.size_t(len(buf)), nil)
	if err := a.end(r, op); err != nil {
		return "", err
	}
	return cText(buf), nil
}

// Close frees the agent and its signer; a second Close does nothing.
func (a *Agent) Close() error {
	if err := a.g.lock("Agent.Close"); err != nil {
		return err
	}
	defer a.g.unlock()
	a.free()
	return nil
}

func (a *Agent) free() {
	if a.ptr != nil {
		C.tessera_agent_free(a.ptr)
		a.ptr = nil
	}
	a.h.delete()
	runtime.SetFinalizer(a, nil)
}

func (a *Agent) finalize() {
	if a.ptr != nil {
		finalized.agents.Add(1)
	}
	a.free()
}
