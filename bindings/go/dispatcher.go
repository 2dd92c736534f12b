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

// DeviceEntry is one Vulkan device, as VulkanDevices lists it.
type DeviceEntry struct {
	// Index is its index (DispatcherConfig.DeviceIndex).
	Index uint32
	// Name is the driver's name for it.
	Name string
	// Type is the kind of device.
	Type DeviceType
	// VendorID is the PCI vendor id.
	VendorID uint32
	// DeviceID is the vendor's device id.
	DeviceID uint32
	// APIVersion is the highest Vulkan version it supports.
	APIVersion uint32
}

// VulkanDevices lists the Vulkan devices. A machine without a Vulkan
// loader gets ErrVulkanLoaderUnavailable.
func VulkanDevices() ([]DeviceEntry, error) {
	const op = "VulkanDevices"
	var count C.size_t
	r := C.tessera_vulkan_devices(nil, 0, &count)
	if r != C.TESSERA_OK && r != C.TESSERA_BUFFER_TOO_SMALL {
		return nil, check(r, op)
	}
	for {
		if count == 0 {
			return nil, nil
		}
		entries := make([]C.tessera_device_entry, count)
		r = C.tessera_vulkan_devices(&entries[0], C.size_t(len(entries)), &count)
		if r == C.TESSERA_BUFFER_TOO_SMALL {
			continue // a device appeared meanwhile: count holds the new number
		}
		if err := check(r, op); err != nil {
			return nil, err
		}
		out := make([]DeviceEntry, count)
		for i := range out {
			e := &entries[i]
			out[i] = DeviceEntry{
				Index:      uint32(e.index),
				Name:       cText(e.name[:]),
				Type:       DeviceType(e.device_type),
				VendorID:   uint32(e.vendor_id),
				DeviceID:   uint32(e.device_id),
				APIVersion: uint32(e.api_version),
			}
		}
		return out, nil
	}
}

// DispatcherConfig says how to open a Dispatcher. Start from
// DefaultDispatcherConfig.
type DispatcherConfig struct {
	// DeviceIndex is the device's index, or -1 for the default (a
	// discrete GPU first) or DeviceName.
	DeviceIndex int32
	// DeviceName is part of the device name (case-insensitive), or "".
	DeviceName string
	// Validation runs the Khronos validation layer and keeps its messages
	// (slow).
	Validation bool
	// SPIRVValGate runs the Khronos SPIR-V validator on every new kernel
	// (the second gate).
	SPIRVValGate bool
	// SPIRVValPath is the spirv-val program ("": on PATH).
	SPIRVValPath string
	// MemoryBudget is the most bytes of buffers one job may use.
	MemoryBudget uint64
	// RunBenchmark runs the start-up benchmark when opening (its figures go
	// into the evidence, and bound each job's work).
	RunBenchmark bool
}

// DefaultDispatcherConfig returns the library's defaults.
func DefaultDispatcherConfig() DispatcherConfig {
	var c C.tessera_dispatcher_config
	mustOK(C.tessera_dispatcher_config_default(&c), "DefaultDispatcherConfig")
	return DispatcherConfig{
		DeviceIndex:  int32(c.device_index),
		Validation:   bool(c.validation),
		SPIRVValGate: bool(c.spirv_val_gate),
		MemoryBudget: uint64(c.memory_budget),
		RunBenchmark: bool(c.run_benchmark),
	}
}

// Dispatcher runs untrusted compute kernels on one Vulkan device: each
// passes both gates (docs/VULKAN.md) before the driver sees it, then runs
// with robust buffer access under a time limit.
type Dispatcher struct {
	g   callGuard
	ptr *C.tessera_dispatcher
}

// OpenDispatcher opens a device for running kernels. The error's Detail
// says what failed.
func OpenDispatcher(config DispatcherConfig) (*Dispatcher, error) {
	const op = "OpenDispatcher"
	if err := noNUL(op, "DeviceName", config.DeviceName); err != nil {
		return nil, err
	}
	if err := noNUL(op, "SPIRVValPath", config.SPIRVValPath); err != nil {
		return nil, err
	}
	var c C.tessera_dispatcher_config
	mustOK(C.tessera_dispatcher_config_default(&c), op)
	var strs cStrings
	defer strs.free()
	c.device_index = C.int32_t(config.DeviceIndex)
	c.device_name = strs.add(config.DeviceName)
	c.validation = cBool(config.Validation)
	c.spirv_val_gate = cBool(config.SPIRVValGate)
	c.spirv_val_path = strs.add(config.SPIRVValPath)
	c.memory_budget = C.uint64_t(config.MemoryBudget)
	c.run_benchmark = cBool(config.RunBenchmark)
	var why [512]C.char
	d := &Dispatcher{}
	r := C.tessera_dispatcher_new(&c, &why[0], C.size_t(len(why)), &d.ptr)
	if err := checkDetail(r, op, why[:]); err != nil {
		return nil, err
	}
	runtime.SetFinalizer(d, (*Dispatcher).finalize)
	return d, nil
}

func (d *Dispatcher) begin(op string) error {
	if err := d.g.lock(op); err != nil {
		return err
	}
	if d.ptr == nil {
		d.g.unlock()
		return errClosed(op, "dispatcher closed")
	}
	return nil
}

// Device returns what the device is, as evidence states it: give it to
// AgentConfig.Device.
func (d *Dispatcher) Device() (Device, error) {
	const op = "Dispatcher.Device"
	if err := d.begin(op); err != nil {
		return Device{}, err
	}
	defer d.g.unlock()
	var dev C.tessera_device
	r := C.tessera_dispatcher_device(d.ptr, &dev)
	if err := check(r, op); err != nil {
		return Device{}, err
	}
	// dev.name points into the dispatcher: copy it while it lives.
	out := Device{
		Name:                  C.GoString(dev.name),
		VendorID:              uint32(dev.vendor_id),
		DeviceID:              uint32(dev.device_id),
		DriverVersion:         uint32(dev.driver_version),
		APIVersion:            uint32(dev.api_version),
		Type:                  DeviceType(dev.device_type),
		Features:              uint32(dev.features),
		DeviceLocalBytes:      uint64(dev.device_local_bytes),
		HostVisibleBytes:      uint64(dev.host_visible_bytes),
		MaxWorkgroupSize:      array3(dev.max_workgroup_size),
		MaxWorkgroupCount:     array3(dev.max_workgroup_count),
		MaxInvocations:        uint32(dev.max_invocations),
		MaxSharedMemory:       uint32(dev.max_shared_memory),
		MaxStorageBufferRange: uint64(dev.max_storage_buffer_range),
		SubgroupSize:          uint32(dev.subgroup_size),
		CopyMBps:              uint32(dev.copy_mbps),
		FMAMFlops:             uint32(dev.fma_mflops),
	}
	runtime.KeepAlive(d)
	return out, nil
}

// Benchmark runs the start-up benchmark again and returns the copy
// bandwidth in GB/s and the FMA throughput in GFLOP/s.
func (d *Dispatcher) Benchmark() (copyGBps, fmaGFlops float64, err error) {
	const op = "Dispatcher.Benchmark"
	if err := d.begin(op); err != nil {
		return 0, 0, err
	}
	defer d.g.unlock()
	var c, f C.double
	r := C.tessera_dispatcher_benchmark(d.ptr, &c, &f)
	runtime.KeepAlive(d)
	if err := check(r, op); err != nil {
		return 0, 0, err
	}
	return float64(c), float64(f), nil
}

// KernelBuffer is one storage buffer of a KernelJob.
type KernelBuffer struct {
	// Binding is the binding in descriptor set 0 (below 32, distinct
	// within the job).
	Binding uint32
	// Len is the bytes the kernel sees.
	Len uint64
	// Init holds the initial contents (at most Len bytes; the rest is
	// zero).
	Init []byte
	// Readback says whether the final contents are returned, into Output.
	Readback bool
	// Output receives a read-back buffer's Len bytes. Run allocates it
	// when it is nil; one shorter than Len gets ErrBufferTooSmall.
	Output []byte
}

// KernelJob is an untrusted compute job.
type KernelJob struct {
	// SPIRV holds the SPIR-V module.
	SPIRV []byte
	// EntryPoint is the GLCompute entry point.
	EntryPoint string
	// Specialization holds the specialization constants.
	Specialization []SpecConstant
	// PushConstants holds the push-constant bytes.
	PushConstants []byte
	// Grid is the workgroup counts in x, y, z.
	Grid [3]uint32
	// Buffers are the storage buffers.
	Buffers []KernelBuffer
	// Timeout is the time limit (whole milliseconds): past it the kernel
	// is stopped.
	Timeout time.Duration
}

// JobFailure is what to report to the coordinator about a failed run:
// the arguments of Agent.FailJob.
type JobFailure struct {
	// Reason is the failure status (ReceiptKernelRejected, ReceiptTimeout, …).
	Reason ReceiptStatus
	// Detail is its detail (the kernel rule for a rejection).
	Detail uint32
	// Usage is the usage to report (a timeout is metered to its limit).
	Usage Usage
}

// Run runs job: both gates, then the kernel under its time limit. The
// read-back buffers' final contents go to their Output (allocated when
// nil). A failure is an *Error with its code (ClassKernelRejected for a
// refused kernel, ErrJobTimeout for a timeout, …) and the dispatcher's
// words; LastFailure says what to report. The dispatcher stays usable
// after every failure.
func (d *Dispatcher) Run(job *KernelJob) (Usage, error) {
	const op = "Dispatcher.Run"
	if job == nil {
		return Usage{}, &Error{Code: CodeNullArgument, Op: op, Detail: "no job"}
	}
	if err := noNUL(op, "EntryPoint", job.EntryPoint); err != nil {
		return Usage{}, err
	}
	for i := range job.Buffers {
		b := &job.Buffers[i]
		if b.Readback && b.Output == nil {
			if b.Len > uint64(^uint(0)>>1) {
				return Usage{}, errArgument(op, "a read-back buffer larger than memory")
			}
			b.Output = make([]byte, b.Len)
		}
	}
	if err := d.begin(op); err != nil {
		return Usage{}, err
	}
	defer d.g.unlock()

	// The job and its buffer array are Go memory holding Go pointers (the
	// SPIR-V, constants, initial contents and outputs), which cgo allows
	// when every one is pinned: the pinner keeps them in place, and alive,
	// until the call has returned. The library keeps none of them.
	var pin runtime.Pinner
	defer pin.Unpin()
	pinned := func(b []byte) *C.uint8_t {
		if len(b) == 0 {
			return nil
		}
		pin.Pin(&b[0])
		return (*C.uint8_t)(unsafe.Pointer(&b[0]))
	}
	entry := C.CString(job.EntryPoint)
	defer C.free(unsafe.Pointer(entry))
	var c C.tessera_kernel_job
	c.size = C.size_t(unsafe.Sizeof(c))
	c.spirv = pinned(job.SPIRV)
	c.spirv_len = C.size_t(len(job.SPIRV))
	c.entry_point = entry
	spec := specToC(job.Specialization)
	if len(spec) > 0 {
		pin.Pin(&spec[0])
		c.specialization = &spec[0]
	}
	c.specialization_count = C.size_t(len(job.Specialization))
	c.push_constants = pinned(job.PushConstants)
	c.push_constants_len = C.size_t(len(job.PushConstants))
	c.grid = c3(job.Grid)
	bufs := make([]C.tessera_kernel_buffer, len(job.Buffers))
	for i, b := range job.Buffers {
		bufs[i] = C.tessera_kernel_buffer{
			binding:    C.uint32_t(b.Binding),
			len:        C.uint64_t(b.Len),
			init:       pinned(b.Init),
			init_len:   C.size_t(len(b.Init)),
			readback:   cBool(b.Readback),
			output:     pinned(b.Output),
			output_len: C.size_t(len(b.Output)),
		}
	}
	if len(bufs) > 0 {
		pin.Pin(&bufs[0])
		c.buffers = &bufs[0]
	}
	c.buffer_count = C.size_t(len(bufs))
	c.timeout_ms = C.uint64_t(job.Timeout / time.Millisecond)

	var usage C.tessera_usage
	r := C.tessera_dispatcher_run(d.ptr, &c, &usage)
	runtime.KeepAlive(job)
	runtime.KeepAlive(d)
	if r != C.TESSERA_OK {
		return Usage{}, &Error{Code: Code(r), Op: op, Detail: d.lastError()}
	}
	return usageFromC(&usage), nil
}

// lastError returns the dispatcher's words for its last error (the lock
// held).
func (d *Dispatcher) lastError() string {
	var need C.size_t
	C.tessera_dispatcher_last_error(d.ptr, nil, 0, &need)
	if need == 0 {
		return ""
	}
	buf := make([]C.char, need)
	if C.tessera_dispatcher_last_error(d.ptr, &buf[0], C.size_t(len(buf)), nil) != C.TESSERA_OK {
		return ""
	}
	return cText(buf)
}

// LastFailure returns, after a failed Run, what to report to the
// coordinator, and false when the last run succeeded.
func (d *Dispatcher) LastFailure() (JobFailure, bool, error) {
	const op = "Dispatcher.LastFailure"
	if err := d.begin(op); err != nil {
		return JobFailure{}, false, err
	}
	defer d.g.unlock()
	var reason, detail C.uint32_t
	var usage C.tessera_usage
	r := C.tessera_dispatcher_last_failure(d.ptr, &reason, &detail, &usage)
	runtime.KeepAlive(d)
	if r == C.TESSERA_NOTHING {
		return JobFailure{}, false, nil
	}
	if err := check(r, op); err != nil {
		return JobFailure{}, false, err
	}
	return JobFailure{Reason: ReceiptStatus(reason), Detail: uint32(detail), Usage: usageFromC(&usage)}, true, nil
}

// LastError returns the dispatcher's words for its last error (the errors
// of Run carry them already).
func (d *Dispatcher) LastError() (string, error) {
	const op = "Dispatcher.LastError"
	if err := d.begin(op); err != nil {
		return "", err
	}
	defer d.g.unlock()
	s := d.lastError()
	runtime.KeepAlive(d)
	return s, nil
}

// Reclaim destroys every device given up on after a timeout whose kernel
// has finished, and returns how many still run abandoned work (at two the
// dispatcher refuses jobs with ErrJobDeviceUnavailable until one ends). A
// host refusing work calls it while idle.
func (d *Dispatcher) Reclaim() (int, error) {
	const op = "Dispatcher.Reclaim"
	if err := d.begin(op); err != nil {
		return 0, err
	}
	defer d.g.unlock()
	var still C.size_t
	r := C.tessera_dispatcher_reclaim(d.ptr, &still)
	runtime.KeepAlive(d)
	if err := check(r, op); err != nil {
		return 0, err
	}
	return int(still), nil
}

// Close frees the dispatcher and its device; a second Close does nothing.
// A device still running abandoned work stays until the process ends.
func (d *Dispatcher) Close() error {
	if err := d.g.lock("Dispatcher.Close"); err != nil {
		return err
	}
	defer d.g.unlock()
	d.free()
	return nil
}

func (d *Dispatcher) free() {
	if d.ptr != nil {
		C.tessera_dispatcher_free(d.ptr)
		d.ptr = nil
	}
	runtime.SetFinalizer(d, nil)
}

func (d *Dispatcher) finalize() {
	if d.ptr != nil {
		finalized.dispatchers.Add(1)
	}
	d.free()
}
