// integration_test.go - the client against a real nats-server and the real sidecar, each started on a free port by the test.

package dlq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"
)

const waitFor = 10 * time.Second

// executable returns the program named by env, else def (relative to clients/go);
// without it the test fails, or is skipped under -short.
func executable(t *testing.T, env, def string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		p = def
	}
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		if testing.Short() {
			t.Skipf("-short: no %s (%s)", p, env)
		}
		t.Fatalf("%s: %s is not an executable (set %s; build the sidecar with ninja -C build)", env, p, env)
	}
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// child is a process a test started; stop ends it by its pid and waits.
type child struct {
	cmd     *exec.Cmd
	log     string
	done    chan struct{}
	waitErr error // how it ended, once done is closed
}

func start(t *testing.T, log string, env []string, argv ...string) *child {
	t.Helper()
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "==== test: starting %s\n", strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr, cmd.Env = f, f, env
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", argv[0], err)
	}
	c := &child{cmd: cmd, log: log, done: make(chan struct{})}
	go func() { c.waitErr = cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { _ = c.stop(syscall.SIGTERM) })
	return c
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends sig unless the process has ended, waits up to 30 s (then
// kills it), and returns how it ended: nil for exit status 0.
func (c *child) stop(sig syscall.Signal) error {
	if !c.exited() {
		_ = c.cmd.Process.Signal(sig)
		select {
		case <-c.done:
		case <-time.After(30 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
			return errors.New("still running 30 s after the signal: killed")
		}
	}
	return c.waitErr
}

// tail returns the last n lines of a log.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// env is one nats-server and one sidecar, stopped when the test ends.
type env struct {
	t       *testing.T
	dir     string
	url     string // with the credentials of envConfig's user
	port    int
	nc      *nats.Conn
	server  *child
	sidecar *child
}

// The suite's sidecar flags (as tests/integration/harness.c): fast timers, no jitter, completed
// tasks kept for dlq.admin.get, no HTTP listener.
var sidecarFlags = []string{
	"http.listen=", "timer.tick_ms=10", "backoff.exp_base_ms=200", "backoff.linear_step_ms=200",
	"backoff.jitter=0", "retry.timeout_ms=500", "store.keep_completed=true", "log.level=debug",
	"shutdown.drain_ms=1000",
}

func startEnv(t *testing.T, jetstream bool, extra ...string) *env {
	t.Helper()
	return startEnvWith(t, envConfig{jetstream: jetstream}, extra...)
}

// envConfig is how startEnvWith runs the server: with JetStream, with a
// config file (its users), and the user the sidecar and the test's own
// connections log in as.
type envConfig struct {
	jetstream  bool
	conf       string
	user, pass string
}

func startEnvWith(t *testing.T, cfg envConfig, extra ...string) *env {
	t.Helper()
	jetstream := cfg.jetstream
	serverBin := executable(t, "DLQ_TEST_NATS_SERVER", "../../.deps/bin/nats-server")
	sidecarBin := executable(t, "DLQ_TEST_SIDECAR", "../../build/sidecar/dlq-sidecar")
	e := &env{t: t, dir: t.TempDir()}
	// A free port may be taken by the time the server binds: try again.
	for try := 0; try < 5 && e.server == nil; try++ {
		port := freePort(t)
		argv := []string{serverBin, "-a", "127.0.0.1", "-p", fmt.Sprint(port)}
		if jetstream {
			argv = append(argv, "-js", "-sd", filepath.Join(e.dir, "js"))
		}
		if cfg.conf != "" {
			argv = append(argv, "-c", cfg.conf)
		}
		s := start(t, filepath.Join(e.dir, "nats.log"), os.Environ(), argv...)
		for deadline := time.Now().Add(waitFor); time.Now().Before(deadline) && !s.exited(); time.Sleep(20 * time.Millisecond) {
			if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
				c.Close()
				e.server, e.port = s, port
				e.url = fmt.Sprintf("nats://127.0.0.1:%d", port)
				if cfg.user != "" {
					e.url = fmt.Sprintf("nats://%s:%s@127.0.0.1:%d", cfg.user, cfg.pass, port)
				}
				break
			}
		}
		if e.server == nil {
			_ = s.stop(syscall.SIGKILL)
		}
	}
	if e.server == nil {
		t.Fatalf("nats-server did not start:\n%s", tail(filepath.Join(e.dir, "nats.log"), 30))
	}
	e.nc = e.connect("test-client")

	// The sidecar's environment without DLQ_*, so that the caller's shell cannot change its config.
	var environ []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DLQ_") {
			environ = append(environ, kv)
		}
	}
	argv := []string{sidecarBin, "--nats.url=" + e.url}
	for _, kv := range append(append([]string{}, sidecarFlags...), extra...) {
		argv = append(argv, "--"+kv)
	}
	e.sidecar = start(t, filepath.Join(e.dir, "dlq-sidecar.log"), environ, argv...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs in %s; the sidecar's last lines:\n%s", e.dir, tail(e.sidecar.log, 40))
		}
	})
	// First of the two (cleanups run last first): SIGTERM must end the sidecar with status 0
	// (DESIGN section 14), which also catches a sanitizer's report at exit.
	t.Cleanup(func() {
		if err := e.sidecar.stop(syscall.SIGTERM); err != nil {
			t.Errorf("the sidecar after SIGTERM: %v (want exit status 0)", err)
		}
	})
	for deadline := time.Now().Add(waitFor); ; time.Sleep(50 * time.Millisecond) {
		if e.sidecar.exited() || time.Now().After(deadline) {
			t.Fatalf("the sidecar did not answer dlq.admin.health:\n%s", tail(e.sidecar.log, 40))
		}
		var h struct{ Status string }
		if m, err := e.nc.Request("dlq.admin.health", nil, 500*time.Millisecond); err == nil &&
			json.Unmarshal(m.Data, &h) == nil && h.Status == "ok" {
			break
		}
	}
	return e
}

func (e *env) connect(name string) *nats.Conn {
	e.t.Helper()
	nc, err := nats.Connect(e.url, nats.Name(name))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	return nc
}

// admin asks dlq.admin.<verb> with a JSON request and decodes the reply.
func (e *env) admin(verb string, req any) map[string]any {
	e.t.Helper()
	var body []byte
	if req != nil {
		body, _ = json.Marshal(req)
	}
	m, err := e.nc.Request("dlq.admin."+verb, body, 5*time.Second)
	if err != nil {
		e.t.Fatalf("dlq.admin.%s: %v", verb, err)
	}
	var out map[string]any
	if err := json.Unmarshal(m.Data, &out); err != nil {
		e.t.Fatalf("dlq.admin.%s: %v: %s", verb, err, m.Data)
	}
	return out
}

func (e *env) get(id string) map[string]any {
	return e.admin("get", map[string]string{"task_id": id})
}

// waitStatus polls dlq.admin.get until the task has status, and returns it.
func (e *env) waitStatus(id, status string) map[string]any {
	e.t.Helper()
	var task map[string]any
	for deadline := time.Now().Add(waitFor); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if task = e.get(id); task["status"] == status {
			return task
		}
	}
	e.t.Fatalf("task %s: want status %s within %v, got %s", id, status, waitFor, dump(task))
	return nil
}

func dump(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// at follows a path of map keys ("task.blob.$bin") in a decoded JSON object.
func at(obj map[string]any, path string) any {
	var v any = obj
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// want checks that each path of obj holds its value (numbers as float64, as JSON decodes them).
func want(t *testing.T, obj map[string]any, pairs map[string]any) {
	t.Helper()
	for path, w := range pairs {
		if got := at(obj, path); fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("%s: want %v, got %v in %s", path, w, got, dump(obj))
		}
	}
}

var uniq struct {
	sync.Mutex
	n int
}

func uniqueID(prefix string) string {
	uniq.Lock()
	defer uniq.Unlock()
	uniq.n++
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), uniq.n)
}

// A service reports a failure with every field, waiting for the ack, and
// another without waiting: dlq.admin.get shows each field as sent. No
// sidecar on a prefix: ErrNoSidecar.
func TestIntegrationReportStored(t *testing.T) {
	e := startEnv(t, false)
	ctx := context.Background()
	type order struct {
		Order int    `msgpack:"order"`
		Blob  []byte `msgpack:"blob"`
	}
	id := uniqueID("rep")
	ack, err := Report(ctx, e.nc, Failure{
		Service: "orders", TaskID: id, Task: order{42, []byte{0, 0xff}},
		Error: "disk quota exceeded", ErrorType: "QuotaError", ErrorCategory: "resource",
		RetryPolicy: "linear", MaxRetries: Retries(7), RetrySubject: "dlq.retry.orders.slow",
		Repos: []string{"orders", "billing"}, Metadata: map[string]any{"tenant": "acme"},
		FailedAt: time.UnixMilli(1764800000123),
	})
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	if ack.Durable || ack.Status != "pending" || ack.NextRetryAt.IsZero() || ack.TaskID != id {
		t.Errorf("core ack: want pending with a next_retry_at, got %+v", ack)
	}
	task := e.get(id)
	want(t, task, map[string]any{
		"task_id": id, "status": "pending", "subject": "dlq.failed.orders", "retry_subject": "dlq.retry.orders.slow",
		"error": "disk quota exceeded", "error_type": "QuotaError", "error_category": "resource",
		"retry_policy": "linear", "metadata.tenant": "acme", "task.blob.$bin": "AP8=", "task.order": 42,
		"max_retries": 7, "repos": []any{"orders", "billing"},
	})
	enc, _ := Encode(Failure{TaskID: "x", Task: order{42, []byte{0, 0xff}}})
	if size := at(task, "task_size"); fmt.Sprint(size) != fmt.Sprint(len(enc)-len("\x82\xa7task_id\xa1x\xa4task")) {
		t.Errorf("task_size: %v, want the struct's encoded size", size)
	}

	// Without waiting: a plain publish, stored all the same; a bin task and the defaults.
	id2 := uniqueID("nowait")
	ack, err = Report(ctx, e.nc, Failure{Service: "payments", TaskID: id2, Task: []byte{1, 2, 3}, Error: "invalid schema: field x"}, WithoutWait())
	if err != nil || ack != nil {
		t.Fatalf("report without wait: %v %+v", err, ack)
	}
	task = e.waitStatus(id2, "pending")
	want(t, task, map[string]any{"subject": "dlq.failed.payments", "error_category": "validation", "task.$bin": "AQID", "max_retries": 3})

	// Nobody on another prefix: no responders, said as such.
	_, err = Report(ctx, e.nc, Failure{Service: "orders", TaskID: "x", Task: 1}, WithPrefix("other"), WithTimeout(2*time.Second))
	if !errors.Is(err, ErrNoSidecar) || !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("no sidecar: want ErrNoSidecar, got %v", err)
	}
}

// Issue 17's keys: Priority, Backoff and Template (one configured in the
// sidecar's file) arrive, as get shows; DependsOn is checked in the
// envelope's bytes (the sidecar's support is another branch's); bad values
// are refused before publishing, an unknown template by the sidecar.
func TestIntegrationIssue17Keys(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "tpl.yaml")
	if err := os.WriteFile(conf, []byte("templates:\n  slow: {max_retries: 9, retry_subject: dlq.retry.tpl}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, false, "config="+conf)
	ctx := context.Background()
	id := uniqueID("k17")
	if _, err := Report(ctx, e.nc, Failure{Service: "orders", TaskID: id, Task: 1, Error: "busy", ErrorCategory: "transient",
		Priority: "high", Backoff: []time.Duration{250 * time.Millisecond, time.Minute}, Template: "slow"}); err != nil {
		t.Fatalf("report: %v", err)
	}
	want(t, e.get(id), map[string]any{"priority": "high", "backoff_ms": []any{250, 60000}, "max_retries": 9, "retry_subject": "dlq.retry.tpl"})

	var refused *RefusedError
	_, err := Report(ctx, e.nc, Failure{Service: "orders", TaskID: uniqueID("k17u"), Task: 1, Template: "nosuch"})
	if !errors.As(err, &refused) || refused.Code != 400 || !strings.Contains(err.Error(), "template") {
		t.Errorf("unknown template: want a 400 naming template, got %v", err)
	}

	b, err := Encode(Failure{TaskID: "order-3", Task: 1, DependsOn: []string{"order-1", "order-2"}})
	var env map[string]any
	if err == nil {
		err = msgpack.Unmarshal(b, &env)
	}
	if err != nil || fmt.Sprint(env["depends_on"]) != "[order-1 order-2]" {
		t.Errorf("depends_on: want [order-1 order-2] in the envelope, got %v (%v)", env["depends_on"], err)
	}
	for field, f := range map[string]Failure{
		"priority":   {Priority: "urgent"},
		"backoff":    {Backoff: []time.Duration{time.Second, 0}},
		"depends_on": {DependsOn: []string{"ok", ""}},
	} {
		f.TaskID, f.Task = "b", 1
		var ee *EnvelopeError
		if _, err := Encode(f); !errors.As(err, &ee) || ee.Field != field {
			t.Errorf("bad %s: want an EnvelopeError naming it, got %v", field, err)
		}
	}
}

// An envelope that breaks the contract is refused before anything is
// published, with an error naming the field; the sidecar sees nothing.
func TestIntegrationInvalidRefused(t *testing.T) {
	e := startEnv(t, false)
	var mu sync.Mutex
	seen := 0
	sub, err := e.nc.Subscribe("dlq.failed.>", func(*nats.Msg) { mu.Lock(); seen++; mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	_ = e.nc.Flush()
	cases := []struct {
		f             Failure
		field, reason string
	}{
		{Failure{Service: "orders", TaskID: "bad-1", Task: 1, MaxRetries: Retries(101)}, "max_retries", "out_of_range"},
		{Failure{Service: "orders", TaskID: "bad-1", Task: 1, RetryPolicy: "sometimes"}, "retry_policy", "bad_value"},
		{Failure{Service: "orders", TaskID: "bad\n1", Task: 1}, "task_id", "bad_chars"},
		{Failure{Service: "orders", TaskID: "bad-1", Task: 1, RetrySubject: "dlq.retry.>"}, "retry_subject", "bad_value"},
		{Failure{Service: "orders", TaskID: "bad-1"}, "task", "task_missing"},
		{Failure{Service: "or ders", TaskID: "bad-1", Task: 1}, "service", "bad_value"},
		{Failure{Service: "orders", TaskID: "big", Task: make([]byte, e.nc.MaxPayload())}, "envelope", "too_big"},
	}
	for _, c := range cases {
		_, err := Report(context.Background(), e.nc, c.f)
		var ee *EnvelopeError
		if !errors.As(err, &ee) || ee.Field != c.field || ee.Reason != c.reason || !strings.HasPrefix(ee.Message, c.field+": ") {
			t.Errorf("want a refusal naming %s (%s), got %v", c.field, c.reason, err)
		}
	}
	_ = e.nc.Flush()
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if seen != 0 {
		t.Errorf("%d refused envelopes were published", seen)
	}
	if st := e.admin("stats", nil); fmt.Sprint(st["queue_size"]) != "0" {
		t.Errorf("the sidecar stored something: %s", dump(st))
	}
}

// handlerLog records what a test handler saw.
type handlerLog struct {
	sync.Mutex
	retries []*Retry
}

func (h *handlerLog) add(r *Retry) {
	h.Lock()
	defer h.Unlock()
	h.retries = append(h.retries, r)
}

func (h *handlerLog) count() int {
	h.Lock()
	defer h.Unlock()
	return len(h.retries)
}

// serve runs Serve on its own connection until the test ends, and checks that it returns nil when stopped.
func (e *env) serve(subject string, handler Handler, opts ...ServeOption) {
	e.t.Helper()
	nc := e.connect("test-worker")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, nc, subject, handler, opts...) }()
	// Serve flushes its subscription before it blocks; a request on the subject sees it.
	for deadline := time.Now().Add(waitFor); ; time.Sleep(20 * time.Millisecond) {
		if _, err := nc.Request(strings.Replace(strings.Replace(subject, ">", "probe", 1), "*", "probe", -1), nil, 200*time.Millisecond); !errors.Is(err, nats.ErrNoResponders) {
			break
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("Serve(%s) never subscribed", subject)
		}
	}
	e.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				e.t.Errorf("Serve returned %v when stopped", err)
			}
		case <-time.After(15 * time.Second):
			e.t.Errorf("Serve did not return 15 s after its context was cancelled")
		}
	})
}

// A worker served by the client gets the retry with the task's exact bytes
// and the headers of DESIGN section 5; its success completes the task.
func TestIntegrationRetryHandler(t *testing.T) {
	e := startEnv(t, false)
	var log handlerLog
	e.serve("dlq.retry.orders", func(ctx context.Context, r *Retry) error {
		if r.TaskID == "" { // the probe of e.serve
			return nil
		}
		log.add(r)
		return nil
	}, WithQueue("orders-workers"))
	// A task with bytes a careless copy would break: NUL, 0xff, a bin, a nested map, a float64.
	task := Raw("\x84\xa1a\xc4\x04\x00\xff\x00\x01\xa1b\x81\xa1c\xc0\xa1d\xcb\x40\x09\x21\xfb\x54\x44\x2d\x18\xa1e\xd1\xfe\xd4")
	id := uniqueID("retry")
	if _, err := Report(context.Background(), e.nc, Failure{
		Service: "orders", TaskID: id, Task: task, Error: "connection reset by peer", ErrorType: "ConnectionError",
		MaxRetries: Retries(4), FailedAt: time.UnixMilli(1764800000123),
	}); err != nil {
		t.Fatalf("report: %v", err)
	}
	e.waitStatus(id, "completed")
	if log.count() != 1 {
		t.Fatalf("want the handler called once, got %d", log.count())
	}
	r := log.retries[0]
	if !bytes.Equal(r.Task, task) {
		t.Errorf("the handler got % x, not the task's exact % x", r.Task, []byte(task))
	}
	if r.TaskID != id || r.Attempt != 1 || r.MaxRetries != 4 || r.ErrorCategory != "network" ||
		r.OriginalSubject != "dlq.failed.orders" || r.Subject != "dlq.retry.orders" ||
		!r.FirstFailedAt.Equal(time.UnixMilli(1764800000123)) || r.Episode == "" ||
		r.MsgID != id+":"+r.Episode+":1" || r.Header.Get(HeaderFirstFailedAt) == "" {
		t.Errorf("headers: %+v (Dlq-First-Failed-At %q)", *r, r.Header.Get(HeaderFirstFailedAt))
	}
	var decoded map[string]any
	if err := r.Decode(&decoded); err != nil || decoded["d"] != 3.141592653589793 || !bytes.Equal(decoded["a"].([]byte), []byte{0, 0xff, 0, 1}) {
		t.Errorf("Decode: %v %v", err, decoded)
	}
}

// A handler that fails: its error is classified (TimeoutError -> network),
// and the task is exhausted after max_retries attempts, the handler called
// exactly that often.
func TestIntegrationHandlerErrorExhausted(t *testing.T) {
	e := startEnv(t, false)
	var log handlerLog
	e.serve("dlq.retry.>", func(ctx context.Context, r *Retry) error {
		if r.TaskID == "" {
			return nil
		}
		log.add(r)
		if b, err := r.Bytes(); err != nil || string(b) != "payload" {
			return fmt.Errorf("the payload: %q %v", b, err)
		}
		return Fail("TimeoutError", "db timed out after %d ms", 5000)
	}, WithQueue("workers"))
	id := uniqueID("exh")
	if _, err := Report(context.Background(), e.nc, Failure{Service: "billing", TaskID: id, Task: []byte("payload"),
		Error: "rate limited, try again", MaxRetries: Retries(2)}); err != nil {
		t.Fatalf("report: %v", err)
	}
	task := e.waitStatus(id, "exhausted")
	want(t, task, map[string]any{"retry_count": 2, "error": "db timed out after 5000 ms", "error_type": "TimeoutError", "error_category": "network"})
	time.Sleep(time.Second) // no third attempt comes
	if n := log.count(); n != 2 {
		t.Errorf("want the handler called 2 times, got %d", n)
	}
}

// A handler that panics replies a failure with the panic's type, and the
// worker keeps serving: the next task completes.
func TestIntegrationHandlerPanic(t *testing.T) {
	e := startEnv(t, false)
	var log handlerLog
	e.serve("dlq.retry.shop", func(ctx context.Context, r *Retry) error {
		if r.TaskID == "" {
			return nil
		}
		log.add(r)
		if strings.HasPrefix(r.TaskID, "panic") {
			var none []int
			_ = none[len(r.TaskID)] // index out of range
		}
		return nil
	}, WithQueue(""))
	id := uniqueID("panic")
	if _, err := Report(context.Background(), e.nc, Failure{Service: "shop", TaskID: id, Task: 1, Error: "ECONNRESET", MaxRetries: Retries(1)}); err != nil {
		t.Fatalf("report: %v", err)
	}
	task := e.waitStatus(id, "exhausted")
	if msg, _ := task["error"].(string); !strings.HasPrefix(msg, "panic: runtime error: index out of range") {
		t.Errorf("error: want the panic's message, got %q", msg)
	}
	want(t, task, map[string]any{"error_type": "runtime.boundsError", "retry_count": 1})
	id2 := uniqueID("fine")
	if _, err := Report(context.Background(), e.nc, Failure{Service: "shop", TaskID: id2, Task: 2, Error: "ECONNRESET"}); err != nil {
		t.Fatalf("report: %v", err)
	}
	e.waitStatus(id2, "completed")
}

type quotaError struct{ left int }

func (q quotaError) Error() string { return fmt.Sprintf("disk quota exceeded (%d left)", q.left) }

// Protect reports the error of the function it runs with its Go type name,
// and a panic with its value's; a success reports nothing.
func TestIntegrationProtect(t *testing.T) {
	e := startEnv(t, false)
	op := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	id := uniqueID("protect")
	err := Protect(context.Background(), func() error { return fmt.Errorf("charge: %w", op) },
		e.nc, Failure{Service: "orders", TaskID: id, Task: map[string]any{"order": 42}})
	var got *net.OpError
	if !errors.As(err, &got) || got != op {
		t.Errorf("Protect must return the function's error, got %v", err)
	}
	want(t, e.get(id), map[string]any{"status": "pending", "error": "charge: dial tcp: connection refused",
		"error_type": "*net.OpError", "error_category": "network", "task.order": 42, "subject": "dlq.failed.orders"})

	// A panic with an error value, under a context already cancelled: reported all the same.
	id2 := uniqueID("protect-panic")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = Protect(ctx, func() error { panic(quotaError{3}) }, e.nc, Failure{Service: "orders", TaskID: id2, Task: 1})
	var pe *PanicError
	if !errors.As(err, &pe) || !errors.As(err, new(quotaError)) {
		t.Errorf("want a *PanicError wrapping the quotaError, got %v", err)
	}
	want(t, e.get(id2), map[string]any{"error": "panic: disk quota exceeded (3 left)", "error_type": "dlq.quotaError",
		"error_category": "resource"})

	// Success: nothing reported. A report that fails is joined to the function's error.
	id3 := uniqueID("protect-ok")
	if err := Protect(context.Background(), func() error { return nil }, e.nc, Failure{Service: "orders", TaskID: id3, Task: 1}); err != nil {
		t.Errorf("a success returned %v", err)
	}
	if g := e.get(id3); at(g, "error.code") == nil || fmt.Sprint(at(g, "error.code")) != "404" {
		t.Errorf("a success was reported: %s", dump(g))
	}
	boom := errors.New("boom")
	err = Protect(context.Background(), func() error { return boom }, e.nc, Failure{Service: "orders", TaskID: "x", Task: 1}, WithPrefix("nobody"), WithTimeout(time.Second))
	if !errors.Is(err, boom) || !errors.Is(err, ErrNoSidecar) {
		t.Errorf("want the function's error joined with ErrNoSidecar, got %v", err)
	}
}

// With durable ingest (ingest.mode: jetstream) the client publishes
// through the stream with Nats-Msg-Id: the PubAck names DLQ_FAILED, a
// resend with the same MsgID is a duplicate, and the task is stored.
func TestIntegrationJetStreamDurable(t *testing.T) {
	e := startEnv(t, true, "ingest.mode=jetstream")
	ctx := context.Background()
	id := uniqueID("js")
	f := Failure{Service: "orders", TaskID: id, Task: []byte("durable"), Error: "schema invalid", MsgID: "js-report-1"}
	ack, err := Report(ctx, e.nc, f)
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	if !ack.Durable || ack.Stream != "DLQ_FAILED" || ack.Seq < 1 || ack.Duplicate {
		t.Errorf("want a PubAck from DLQ_FAILED, got %+v", ack)
	}
	again, err := Report(ctx, e.nc, f)
	if err != nil || !again.Durable || !again.Duplicate || again.Seq != ack.Seq {
		t.Errorf("the resend with the same MsgID: want a duplicate of seq %d, got %+v %v", ack.Seq, again, err)
	}
	want(t, e.waitStatus(id, "pending"), map[string]any{"error": "schema invalid", "task.$bin": "ZHVyYWJsZQ=="})

	// Without waiting: a plain publish with Nats-Msg-Id, which the stream keeps once.
	id2 := uniqueID("js-nowait")
	f2 := Failure{Service: "orders", TaskID: id2, Task: 1, Error: "schema invalid", FailedAt: time.UnixMilli(1764800000123)}
	for k := 0; k < 2; k++ {
		if _, err := Report(ctx, e.nc, f2, WithoutWait()); err != nil {
			t.Fatalf("report without wait: %v", err)
		}
	}
	_ = e.nc.Flush()
	e.waitStatus(id2, "pending")
	ack3, err := Report(ctx, e.nc, f2) // the same default Nats-Msg-Id: <task_id>:<failed_at ms>
	if err != nil || !ack3.Duplicate {
		t.Errorf("the default Nats-Msg-Id: want a duplicate, got %+v %v", ack3, err)
	}

	// DurableAlways on a subject no stream captures: refused, not sent on core NATS.
	_, err = Report(ctx, e.nc, f, WithPrefix("other"), WithDurability(DurableAlways), WithTimeout(2*time.Second))
	if !errors.Is(err, ErrNoStream) {
		t.Errorf("want ErrNoStream, got %v", err)
	}
	// DurableNever: a core request, which the stream answers with its PubAck (read as such).
	id4 := uniqueID("js-core")
	ack4, err := Report(ctx, e.nc, Failure{Service: "orders", TaskID: id4, Task: 1}, WithDurability(DurableNever))
	if err != nil || !ack4.Durable || ack4.Stream != "DLQ_FAILED" {
		t.Errorf("a core request in JetStream mode: want the stream's PubAck, got %+v %v", ack4, err)
	}
	e.waitStatus(id4, "pending")
}

// The user "service" of docs/nats-auth.conf may publish only dlq.failed.> and read its own
// inbox: a report is acknowledged in core mode and durably in JetStream mode, quickly, and the
// server sees no permissions violation (a JetStream API lookup would be one, and would stall
// the report until its timeout).
func TestIntegrationServicePermissions(t *testing.T) {
	for _, js := range []bool{false, true} {
		t.Run(map[bool]string{false: "core", true: "jetstream"}[js], func(t *testing.T) {
			conf := filepath.Join(t.TempDir(), "auth.conf")
			if err := os.WriteFile(conf, []byte(`authorization {
  users: [
    {user: admin, password: adminpw}
    {user: service, password: servicepw,
     permissions: {publish: ["dlq.failed.>"], subscribe: ["_INBOX_service.>"]}}
  ]
}
`), 0o600); err != nil {
				t.Fatal(err)
			}
			var extra []string
			if js {
				extra = append(extra, "ingest.mode=jetstream")
			}
			e := startEnvWith(t, envConfig{jetstream: js, conf: conf, user: "admin", pass: "adminpw"}, extra...)
			var mu sync.Mutex
			var violations []error
			svc, err := nats.Connect(fmt.Sprintf("nats://service:servicepw@127.0.0.1:%d", e.port),
				nats.CustomInboxPrefix("_INBOX_service"),
				nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
					mu.Lock()
					violations = append(violations, err)
					mu.Unlock()
				}))
			if err != nil {
				t.Fatal(err)
			}
			defer svc.Close()
			id := uniqueID("perm")
			begin := time.Now()
			ack, err := Report(context.Background(), svc, Failure{Service: "orders", TaskID: id, Task: 1, Error: "ECONNRESET"})
			took := time.Since(begin)
			if err != nil || ack.Durable != js || took > 2*time.Second {
				t.Errorf("report as the service user: want a durable=%v ack at once, got %+v %v after %v", js, ack, err, took)
			}
			if js && ack != nil && (ack.Stream != "DLQ_FAILED" || ack.Duplicate) {
				t.Errorf("want a new message in DLQ_FAILED, got %+v", ack)
			}
			e.waitStatus(id, "pending")
			_ = svc.Flush()
			mu.Lock()
			defer mu.Unlock()
			if len(violations) > 0 {
				t.Errorf("the server refused the service user: %v", violations)
			}
		})
	}
}
