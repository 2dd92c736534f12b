package tessera

/*
#include <stdint.h>
#include <tessera.h>

extern void tesseraGoLog(uint32_t level, char *target, char *message);

static void tessera_go_log(void *userdata, uint32_t level, const char *target, const char *message) {
	(void)userdata;
	tesseraGoLog(level, (char *)target, (char *)message);
}

static tessera_result tessera_go_set_log(uint32_t max_level) {
	return tessera_set_log_callback(tessera_go_log, NULL, max_level);
}
*/
import "C"

import "sync/atomic"

// LogLevel is the level of a log line.
type LogLevel uint32

// Log levels; each includes the ones above it.
const (
	// LogOff turns logging off.
	LogOff LogLevel = 0
	// LogError: errors only.
	LogError LogLevel = 1
	// LogWarn: and warnings.
	LogWarn LogLevel = 2
	// LogInfo: and information (the status line, sessions, jobs).
	LogInfo LogLevel = 3
	// LogDebug: and debugging detail.
	LogDebug LogLevel = 4
	// LogTrace: everything.
	LogTrace LogLevel = 5
)

// String names the level.
func (l LogLevel) String() string {
	switch l {
	case LogOff:
		return "OFF"
	case LogError:
		return "ERROR"
	case LogWarn:
		return "WARN"
	case LogInfo:
		return "INFO"
	case LogDebug:
		return "DEBUG"
	case LogTrace:
		return "TRACE"
	}
	return "?"
}

// LogFunc receives one log line of the library: its level, its target (the
// module) and its text. It is called from any of the library's threads,
// one line at a time, and should return quickly; lines the library writes
// while it runs on the same thread are dropped. A method it calls on a
// handle that another call holds returns ErrInUse instead of waiting (the
// library holds every other thread's log line until it returns).
type LogFunc func(level LogLevel, target, message string)

var (
	// logFunc is the function the C trampoline calls (nil: none). The
	// library is given no userdata: nothing of Go's is held by C.
	logFunc atomic.Pointer[LogFunc]
	// logGuard serializes SetLogger.
	logGuard callGuard
)

// SetLogger sends the library's log lines up to max to f; a nil f or
// LogOff turns logging off. It is process-wide: the last call wins. It
// returns once no thread runs the function it replaces. Errors:
// ErrInvalidArgument for a level past LogTrace, ErrInUse from inside the
// log function, ErrUnsupported when the program already installed another
// logger for the library's Rust log crate.
func SetLogger(f LogFunc, max LogLevel) error {
	const op = "SetLogger"
	if err := logGuard.lock(op); err != nil {
		return err
	}
	defer logGuard.unlock()
	if f == nil {
		max = LogOff
	}
	if max > LogTrace {
		return &Error{Code: CodeInvalidArgument, Op: op, Detail: "no such log level"}
	}
	if logThreads.here() {
		return &Error{Code: CodeInUse, Op: op, Detail: "called from the log function"}
	}
	if max == LogOff {
		// The library returns once no thread runs the function; none is
		// called after it.
		r := C.tessera_set_log_callback(nil, nil, 0)
		if err := check(r, op); err != nil {
			return err
		}
		logFunc.Store(nil)
		return nil
	}
	// f first, then the library: it returns once no thread runs a line
	// that may have gone to the function replaced.
	old := logFunc.Swap(&f)
	if err := check(C.tessera_go_set_log(C.uint32_t(max)), op); err != nil {
		logFunc.Store(old)
		return err
	}
	return nil
}

// logPanics counts panics recovered in log functions, for the tests.
var logPanics counter

//export tesseraGoLog
func tesseraGoLog(level C.uint32_t, target, message *C.char) {
	defer logThreads.enter()()
	defer func() {
		if recover() != nil {
			logPanics.add()
		}
	}()
	f := logFunc.Load()
	if f == nil {
		return
	}
	(*f)(LogLevel(level), C.GoString(target), C.GoString(message))
}
