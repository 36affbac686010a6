// text.go - what the files share: a bounded MessagePack walk, subject checks, text cleaning, error type names.

package dlq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"
)

// mpHead reads the head of the MessagePack value at b[0]: the bytes of its
// head and body when it is a scalar (n), or the head's bytes and the number
// of values it contains when it is a container (items >= 0). ok is false
// when the head itself passes the end of b; bad when b[0] is 0xc1.
func mpHead(b []byte) (n int, items int, ok, bad bool) {
	c := b[0]
	be := func(off, size int) (int, bool) { // a big-endian length of size bytes after off
		if len(b) < off+size {
			return 0, false
		}
		switch size {
		case 1:
			return int(b[off]), true
		case 2:
			return int(binary.BigEndian.Uint16(b[off:])), true
		}
		return int(binary.BigEndian.Uint32(b[off:])), true
	}
	var l int
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return 1, -1, true, false
	case c <= 0x8f:
		return 1, 2 * int(c&0x0f), true, false
	case c <= 0x9f:
		return 1, int(c & 0x0f), true, false
	case c <= 0xbf:
		return 1 + int(c&0x1f), -1, true, false
	case c == 0xc1:
		return 0, -1, false, true
	case c >= 0xc4 && c <= 0xc6: // bin 8/16/32
		size := 1 << (c - 0xc4)
		l, ok = be(1, size)
		return 1 + size + l, -1, ok, false
	case c >= 0xc7 && c <= 0xc9: // ext 8/16/32: length, type, data
		size := 1 << (c - 0xc7)
		l, ok = be(1, size)
		return 2 + size + l, -1, ok, false
	case c == 0xca:
		return 5, -1, true, false
	case c == 0xcb:
		return 9, -1, true, false
	case c >= 0xcc && c <= 0xcf: // uint 8/16/32/64
		return 1 + 1<<(c-0xcc), -1, true, false
	case c >= 0xd0 && c <= 0xd3: // int 8/16/32/64
		return 1 + 1<<(c-0xd0), -1, true, false
	case c >= 0xd4 && c <= 0xd8: // fixext 1/2/4/8/16
		return 2 + 1<<(c-0xd4), -1, true, false
	case c >= 0xd9 && c <= 0xdb: // str 8/16/32
		size := 1 << (c - 0xd9)
		l, ok = be(1, size)
		return 1 + size + l, -1, ok, false
	case c == 0xdc || c == 0xdd: // array 16/32
		size := 2 << (c - 0xdc)
		l, ok = be(1, size)
		return 1 + size, l, ok, false
	default: // 0xde, 0xdf: map 16/32
		size := 2 << (c - 0xde)
		l, ok = be(1, size)
		return 1 + size, 2 * l, ok, false
	}
}

// mpWalk checks that b starts with one complete MessagePack value whose
// containers nest at most maxDepth deep, never reading past the end of b,
// without recursion. It returns the value's length, or the sidecar's
// reason ("truncated", "too_deep", "bad_msgpack") and the offset of the
// offending byte.
func mpWalk(b []byte, maxDepth int) (used int, reason string, at int) {
	left := []int{1} // values still to read in each open container; the outer "container" holds one
	pos := 0
	for len(left) > 0 {
		top := len(left) - 1
		if left[top] == 0 {
			left = left[:top]
			continue
		}
		left[top]--
		if pos >= len(b) {
			return 0, "truncated", pos
		}
		n, items, ok, bad := mpHead(b[pos:])
		if bad {
			return 0, "bad_msgpack", pos
		}
		if !ok || pos+n > len(b) {
			return 0, "truncated", pos
		}
		if items >= 0 {
			if len(left) > maxDepth {
				return 0, "too_deep", pos
			}
			left = append(left, items)
		}
		pos += n
	}
	return pos, "", 0
}

// mpMapLen returns the entry count of the map that b starts with, or false
// when b does not start with a map.
func mpMapLen(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	switch c := b[0]; {
	case c >= 0x80 && c <= 0x8f:
		return int(c & 0x0f), true
	case c == 0xde && len(b) >= 3:
		return int(binary.BigEndian.Uint16(b[1:])), true
	case c == 0xdf && len(b) >= 5:
		return int(binary.BigEndian.Uint32(b[1:])), true
	}
	return 0, false
}

// mpKind names the kind of the MessagePack value starting with byte c, as the sidecar's messages do.
func mpKind(c byte) string {
	switch {
	case c <= 0x7f || c >= 0xe0 || (c >= 0xcc && c <= 0xd3):
		return "an integer"
	case c <= 0x8f || c == 0xde || c == 0xdf:
		return "a map"
	case c <= 0x9f || c == 0xdc || c == 0xdd:
		return "an array"
	case c <= 0xbf || (c >= 0xd9 && c <= 0xdb):
		return "a string"
	case c == 0xc0:
		return "nil"
	case c == 0xc2 || c == 0xc3:
		return "a boolean"
	case c >= 0xc4 && c <= 0xc6:
		return "a binary"
	case c == 0xca || c == 0xcb:
		return "a float"
	}
	return "an extension"
}

// subjectOK checks s as a NATS subject: tokens separated by '.', none
// empty, no whitespace, control characters or DEL; '*' (a whole token) and
// '>' (the whole last token) only with wildcards. At most 4096 bytes.
func subjectOK(s string, wildcards bool) bool {
	if s == "" || len(s) > maxSubjectLen {
		return false
	}
	tokens := strings.Split(s, ".")
	for k, t := range tokens {
		if t == "" {
			return false
		}
		for i := 0; i < len(t); i++ {
			if c := t[i]; c <= ' ' || c == 0x7f {
				return false
			}
		}
		if strings.ContainsAny(t, "*>") {
			if !wildcards || (t != "*" && t != ">") || (t == ">" && k != len(tokens)-1) {
				return false
			}
		}
	}
	return true
}

// cut returns s cut to at most max bytes at a character boundary.
func cut(s string, max int) string {
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max]
}

// cleanText makes s valid UTF-8 (each invalid byte becomes U+FFFD), turns
// NUL into a space and, when the result passes max bytes, cuts it at a
// character boundary so that it ends with marker within max bytes.
func cleanText(s string, max int, marker string) string {
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		var b strings.Builder
		for _, r := range s { // an invalid byte comes as one utf8.RuneError
			if r == 0 {
				r = ' '
			}
			b.WriteRune(r)
		}
		s = b.String()
	}
	if len(s) <= max {
		return s
	}
	return cut(s, max-len(marker)) + marker
}

// TypedError is an error that names its own error_type: [Protect] and
// [Serve] send ErrorType() instead of the Go type name.
type TypedError interface {
	error
	ErrorType() string
}

// Error is an error with a type and a message chosen by the caller
// ("TimeoutError", "db timed out"); see [Fail].
type Error struct {
	Type    string // the error_type sent
	Message string // the error sent
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// ErrorType returns e.Type.
func (e *Error) ErrorType() string { return e.Type }

// Fail returns an [*Error] of type errorType whose message is formatted
// as fmt.Sprintf does: `return dlq.Fail("TimeoutError", "db timed out after %d ms", ms)`.
func Fail(errorType, format string, args ...any) error {
	return &Error{Type: errorType, Message: fmt.Sprintf(format, args...)}
}

// ErrorType is the error_type that [Protect] and [Serve] send for err:
// ErrorType() of the first error in its chain that is a [TypedError], else
// the Go type name of err ("*net.OpError"), looking through the wrappers
// of package fmt (fmt.Errorf with %w) to the error they wrap.
func ErrorType(err error) string {
	if err == nil {
		return ""
	}
	var te TypedError
	if errors.As(err, &te) {
		return te.ErrorType()
	}
	for {
		t := reflect.TypeOf(err)
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.PkgPath() != "fmt" {
			break
		}
		inner := errors.Unwrap(err)
		if inner == nil {
			if u, ok := err.(interface{ Unwrap() []error }); ok && len(u.Unwrap()) > 0 {
				inner = u.Unwrap()[0]
			}
		}
		if inner == nil {
			break
		}
		err = inner
	}
	return fmt.Sprintf("%T", err)
}
