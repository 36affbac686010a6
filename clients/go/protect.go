// protect.go - run a function and report its error or panic: the seed's execute_with_dlq.

package dlq

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/nats-io/nats.go"
)

// PanicError is what [Protect] returns for a function that panicked (and
// what [Serve] reports for a handler that panicked).
type PanicError struct {
	Value any    // the value given to panic
	Stack []byte // the panicking goroutine's stack
}

// Error describes the panic.
func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// ErrorType is the Go type name of the panic's value ("runtime.boundsError",
// "string"), or the error type of an error value as [ErrorType] gives it.
func (e *PanicError) ErrorType() string {
	if err, ok := e.Value.(error); ok {
		return ErrorType(err)
	}
	return fmt.Sprintf("%T", e.Value)
}

// Unwrap returns the panic's value when it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// run calls fn and turns a panic into a *PanicError.
func run(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return fn()
}

// Protect runs fn and, when it fails, reports the failure f to the sidecar
// (as [Report] does, with opts) with Error set to the error's message and
// ErrorType to its type ([ErrorType]: the Go type name, such as
// "*net.OpError", or the ErrorType() of a [TypedError]); fields of f that
// are set are kept. A panic in fn is recovered and reported with the Go
// type name of its value, and returned as a [*PanicError].
//
// It returns nil when fn succeeded, else fn's error (errors.Is and
// errors.As see it) joined with the report's error when the report failed
// too. The report is sent even when ctx is already cancelled (a cancelled
// request is a common failure): it keeps ctx's values, not its
// cancellation, and is bounded by the report's timeout. Safe for
// concurrent use.
func Protect(ctx context.Context, fn func() error, nc *nats.Conn, f Failure, opts ...Option) error {
	err := run(fn)
	if err == nil {
		return nil
	}
	f.Error = err.Error()
	f.ErrorType = ErrorType(err)
	f.Error = cleanText(f.Error, MaxErrorLen, truncatedMarker)
	f.ErrorType = cleanText(f.ErrorType, MaxStringLen, "")
	if _, rerr := Report(context.WithoutCancel(ctx), nc, f, opts...); rerr != nil {
		return errors.Join(err, fmt.Errorf("dlq: the failure was not reported: %w", rerr))
	}
	return err
}
