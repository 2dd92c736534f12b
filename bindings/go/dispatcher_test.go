package tessera_test

// The Vulkan dispatcher (lavapipe in CI): devices, opening one and its
// errors, the device's evidence view, the benchmark, a real kernel (saxpy)
// checked element by element, a kernel the gate refuses, a kernel stopped
// at its time limit, and the dispatcher usable after each failure.

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tessera "github.com/tessera-compute/tessera/bindings/go"
)

func readKernel(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "core", "kernels", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func float32s(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

func TestVulkanDevices(t *testing.T) {
	devs, err := tessera.VulkanDevices()
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) == 0 || devs[0].Index != 0 || devs[0].Name == "" {
		t.Fatalf("devices %+v", devs)
	}
	t.Logf("device 0: %s (%s)", devs[0].Name, devs[0].Type)
}

func TestDispatcherOpenErrors(t *testing.T) {
	c := tessera.DefaultDispatcherConfig()
	if c.DeviceIndex != -1 || !c.SPIRVValGate || !c.RunBenchmark {
		t.Fatalf("defaults %+v", c)
	}
	c.RunBenchmark = false
	bad := c
	bad.DeviceIndex = 500
	_, err := tessera.OpenDispatcher(bad)
	wantCode(t, err, tessera.ErrVulkanDeviceNotFound)
	if !errors.Is(err, tessera.ClassVulkan) || err.(*tessera.Error).Detail == "" {
		t.Errorf("no words: %v", err)
	}
	bad = c
	bad.DeviceIndex = -2
	_, err = tessera.OpenDispatcher(bad)
	wantCode(t, err, tessera.ErrInvalidConfig)
	bad = c
	bad.DeviceName = "no such device anywhere"
	_, err = tessera.OpenDispatcher(bad)
	wantCode(t, err, tessera.ErrVulkanDeviceNotFound)
	bad = c
	bad.SPIRVValPath = "/nonexistent/spirv-val"
	_, err = tessera.OpenDispatcher(bad)
	wantCode(t, err, tessera.ErrVulkanKhronosUnavailable)
	bad = c
	bad.DeviceName = "a\x00b"
	_, err = tessera.OpenDispatcher(bad)
	wantCode(t, err, tessera.ErrInvalidArgument)
}

func openDispatcher(t *testing.T) *tessera.Dispatcher {
	t.Helper()
	d, err := tessera.OpenDispatcher(tessera.DefaultDispatcherConfig())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

const saxpyN = 1000

func saxpyJob(t *testing.T) (*tessera.KernelJob, float32) {
	x := make([]float32, saxpyN)
	y := make([]float32, saxpyN)
	for i := range x {
		x[i] = float32(i)
		y[i] = 1
	}
	const a = 2.5
	push := make([]byte, 8)
	binary.LittleEndian.PutUint32(push, math.Float32bits(a))
	binary.LittleEndian.PutUint32(push[4:], saxpyN)
	return &tessera.KernelJob{
		SPIRV:         readKernel(t, "saxpy.spv"),
		EntryPoint:    "main",
		PushConstants: push,
		Grid:          [3]uint32{(saxpyN + 63) / 64, 1, 1},
		Buffers: []tessera.KernelBuffer{
			{Binding: 0, Len: 4 * saxpyN, Init: float32s(x)},
			{Binding: 1, Len: 4 * saxpyN, Init: float32s(y), Readback: true},
		},
		Timeout: 10 * time.Second,
	}, a
}

func runSaxpy(t *testing.T, d *tessera.Dispatcher) {
	t.Helper()
	job, a := saxpyJob(t)
	usage, err := d.Run(job)
	if err != nil {
		t.Fatal(err)
	}
	out := job.Buffers[1].Output
	if len(out) != 4*saxpyN {
		t.Fatalf("output of %d bytes", len(out))
	}
	wrong := 0
	for i := 0; i < saxpyN; i++ {
		got := math.Float32frombits(binary.LittleEndian.Uint32(out[4*i:]))
		if math.Abs(float64(got-(a*float32(i)+1))) > 1e-3 {
			wrong++
		}
	}
	if wrong > 0 {
		t.Fatalf("%d wrong elements", wrong)
	}
	if usage.Dispatches != 1 || usage.BytesIn != 8*saxpyN || usage.BytesOut != 4*saxpyN {
		t.Errorf("usage %+v", usage)
	}
	if _, failed, err := d.LastFailure(); failed || err != nil {
		t.Errorf("a failure after a success: %v", err)
	}
}

func TestDispatcher(t *testing.T) {
	d := openDispatcher(t)
	defer d.Close()
	gcStress()

	dev, err := d.Device()
	if err != nil {
		t.Fatal(err)
	}
	if dev.Name == "" || dev.MaxInvocations == 0 || dev.MaxStorageBufferRange == 0 || dev.CopyMBps == 0 || dev.FMAMFlops == 0 {
		t.Errorf("device %+v", dev)
	}
	copyGBps, fma, err := d.Benchmark()
	if err != nil || copyGBps <= 0 || fma <= 0 {
		t.Errorf("benchmark %v %v %v", copyGBps, fma, err)
	}

	t.Run("saxpy", func(t *testing.T) { runSaxpy(t, d) })

	t.Run("argument errors", func(t *testing.T) {
		job, _ := saxpyJob(t)
		job.Buffers[1].Output = make([]byte, 10)
		_, err := d.Run(job)
		wantCode(t, err, tessera.ErrBufferTooSmall)
		job.Buffers[1].Output = nil
		job.EntryPoint = "ma\x00in"
		_, err = d.Run(job)
		wantCode(t, err, tessera.ErrInvalidArgument)
		_, err = d.Run(nil)
		wantCode(t, err, tessera.ErrNullArgument)
		// A wrong entry point is the kernel's fault: refused by the gate.
		job.EntryPoint = "not_main"
		_, err = d.Run(job)
		if !errors.Is(err, tessera.ClassKernelRejected) {
			t.Fatalf("wrong entry point: %v", err)
		}
	})

	t.Run("refused kernel", func(t *testing.T) {
		job := &tessera.KernelJob{
			SPIRV:      readKernel(t, "hostile_ptr_bitcast.spv"),
			EntryPoint: "main",
			Grid:       [3]uint32{1, 1, 1},
			Buffers:    []tessera.KernelBuffer{{Binding: 0, Len: 1024, Readback: true}},
			Timeout:    5 * time.Second,
		}
		_, err := d.Run(job)
		if !errors.Is(err, tessera.ClassKernelRejected) {
			t.Fatalf("hostile kernel: %v", err)
		}
		code, _ := tessera.CodeOf(err)
		rule, ok := code.KernelRule()
		if !ok || code.String() != "kernel_rejected" {
			t.Fatalf("code %v", code)
		}
		if !strings.Contains(err.Error(), "rejected") {
			t.Errorf("no words: %v", err)
		}
		f, failed, err := d.LastFailure()
		if err != nil || !failed || f.Reason != tessera.ReceiptKernelRejected || f.Detail&0xFFFF != rule {
			t.Errorf("failure %+v %v %v (rule %d)", f, failed, err, rule)
		}
		words, err := d.LastError()
		if err != nil || !strings.Contains(words, "rejected") {
			t.Errorf("last error %q %v", words, err)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		job := &tessera.KernelJob{
			SPIRV:      readKernel(t, "hostile_loop.spv"),
			EntryPoint: "main",
			// Endless on a GPU; on lavapipe practically so.
			Grid:    [3]uint32{65535, 1, 1},
			Buffers: []tessera.KernelBuffer{{Binding: 0, Len: 64, Init: make([]byte, 64)}},
			Timeout: 300 * time.Millisecond,
		}
		_, err := d.Run(job)
		wantCode(t, err, tessera.ErrJobTimeout)
		f, failed, err := d.LastFailure()
		if err != nil || !failed || f.Reason != tessera.ReceiptTimeout || f.Usage.GPUTimeMicros != 300000 {
			t.Errorf("failure %+v %v %v", f, failed, err)
		}
		// The watchdog ends the kernel; its device is then reclaimed.
		still := -1
		for tries := 0; tries < 200; tries++ {
			if still, err = d.Reclaim(); err != nil {
				t.Fatal(err)
			}
			if still == 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if still != 0 {
			t.Errorf("%d devices still run abandoned work", still)
		}
	})

	// Still usable after all of that.
	t.Run("saxpy again", func(t *testing.T) { runSaxpy(t, d) })

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = d.Run(&tessera.KernelJob{})
	wantCode(t, err, tessera.ErrStopped)
	_, err = d.Device()
	wantCode(t, err, tessera.ErrStopped)
	_, _, err = d.Benchmark()
	wantCode(t, err, tessera.ErrStopped)
	_, _, err = d.LastFailure()
	wantCode(t, err, tessera.ErrStopped)
	_, err = d.Reclaim()
	wantCode(t, err, tessera.ErrStopped)
	if err := d.Close(); err != nil {
		t.Error("a second Close:", err)
	}
}
