// codec.go: frames to and from JSON — every frame type of the contract, strict about what it
// must have and lenient about what it may add. It must not know connections.

package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Sentinel errors, one per class of bad input; a *DecodeError matches exactly one with errors.Is.
var (
	// ErrInvalidJSON: the bytes are not a JSON object.
	ErrInvalidJSON = errors.New("invalid JSON")
	// ErrMissingType: the object has no "type" field (or it is empty).
	ErrMissingType = errors.New("missing type")
	// ErrMissingField: a known frame type lacks a required field, or carries null for it.
	ErrMissingField = errors.New("missing required field")
	// ErrWrongType: a field holds a value of the wrong JSON type or format.
	ErrWrongType = errors.New("field has the wrong type")
)

// DecodeError says what is wrong with a frame and where.
type DecodeError struct {
	Class     error  // one of ErrInvalidJSON, ErrMissingType, ErrMissingField, ErrWrongType
	FrameType Type   // empty when the type could not be read
	Field     string // dotted path of the offending field, e.g. "claim.expires_at"; empty when not about a field
	Detail    string // what was found, in words
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	b.WriteString("protocol: ")
	if e.FrameType != "" {
		fmt.Fprintf(&b, "%s frame: ", e.FrameType)
	}
	b.WriteString(e.Class.Error())
	if e.Field != "" {
		fmt.Fprintf(&b, " %q", e.Field)
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// Is matches the error's class.
func (e *DecodeError) Is(target error) bool { return target == e.Class }

// Unwrap returns the class so errors.Is works through wrapping.
func (e *DecodeError) Unwrap() error { return e.Class }

func newFrame(t Type) (Frame, bool) {
	switch t {
	case TypeHello:
		return &Hello{}, true
	case TypeHeartbeat:
		return &Heartbeat{}, true
	case TypeAccept:
		return &Accept{}, true
	case TypeDecline:
		return &Decline{}, true
	case TypeProgress:
		return &Progress{}, true
	case TypeCompleteJSON:
		return &CompleteJSON{}, true
	case TypeFail:
		return &Fail{}, true
	case TypeLogBatch:
		return &LogBatch{}, true
	case TypeReadyForMore:
		return &ReadyForMore{}, true
	case TypeWelcome:
		return &Welcome{}, true
	case TypeOffer:
		return &Offer{}, true
	case TypeCancel:
		return &Cancel{}, true
	case TypeHeartbeatAck:
		return &HeartbeatAck{}, true
	case TypeCompleteAck:
		return &CompleteAck{}, true
	case TypeFailAck:
		return &FailAck{}, true
	case TypeLogAck:
		return &LogAck{}, true
	case TypeError:
		return &Error{}, true
	}
	return nil, false
}

// Decode parses one frame. It never panics. A type it does not know is returned as Unknown
// with a nil error; every other problem is a *DecodeError naming the field.
// The frame returned is a value (Hello, Offer, ...), not a pointer.
func Decode(data []byte) (Frame, error) {
	var head map[string]json.RawMessage
	if err := json.Unmarshal(data, &head); err != nil || head == nil {
		detail := "not a JSON object"
		if err != nil {
			detail = err.Error()
		}
		return nil, &DecodeError{Class: ErrInvalidJSON, Detail: detail}
	}
	rawType, ok := head["type"]
	if !ok || isNull(rawType) {
		return nil, &DecodeError{Class: ErrMissingType}
	}
	var t Type
	if err := json.Unmarshal(rawType, &t); err != nil {
		return nil, &DecodeError{Class: ErrWrongType, Field: "type", Detail: "want a string, got " + describe(rawType)}
	}
	if t == "" {
		return nil, &DecodeError{Class: ErrMissingType, Detail: "type is empty"}
	}
	f, known := newFrame(t)
	if !known {
		return Unknown{Type: t, Raw: append(json.RawMessage(nil), data...)}, nil
	}
	rv := reflect.ValueOf(f).Elem()
	if err := checkObject(head, rv.Type(), ""); err != nil {
		err.FrameType = t
		return nil, err
	}
	if err := json.Unmarshal(data, f); err != nil {
		de := wrongType(err)
		de.FrameType = t
		return nil, de
	}
	return rv.Interface().(Frame), nil
}

// DecodeInto validates raw (a JSON object) against the required fields of v's type and decodes it
// into v (a pointer to a struct); job inputs and results use it. The error is a *DecodeError.
func DecodeInto(raw []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("protocol: DecodeInto needs a pointer to a struct, got %T", v)
	}
	var head map[string]json.RawMessage
	if err := json.Unmarshal(raw, &head); err != nil || head == nil {
		return &DecodeError{Class: ErrInvalidJSON, Detail: "not a JSON object"}
	}
	if err := checkObject(head, rv.Elem().Type(), ""); err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return wrongType(err)
	}
	return nil
}

// wrongType turns what json.Unmarshal says about a value that checkObject let through (a number
// out of range, say) into a DecodeError naming the field.
func wrongType(err error) *DecodeError {
	de := &DecodeError{Class: ErrWrongType, Detail: err.Error()}
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		de.Field = ute.Field
		de.Detail = "want " + ute.Type.String() + ", got " + ute.Value
	}
	return de
}

var (
	timeType   = reflect.TypeOf(time.Time{})
	objectType = reflect.TypeOf(json.RawMessage(nil))
)

// checkObject verifies that every required field of struct type t is present, not null and of the
// right JSON kind, recursing into nested objects and lists. A field is required unless its json tag
// says omitempty; Welcome's heartbeat_ms and offer_ttl_ms are optional on purpose (see PROTOCOL.md).
func checkObject(obj map[string]json.RawMessage, t reflect.Type, path string) *DecodeError {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, optional := jsonName(sf)
		if name == "-" {
			continue
		}
		p := join(path, name)
		raw, ok := obj[name]
		if !ok || isNull(raw) {
			if optional {
				continue
			}
			return &DecodeError{Class: ErrMissingField, Field: p}
		}
		if err := checkValue(raw, sf.Type, p); err != nil {
			return err
		}
	}
	return nil
}

func checkValue(raw json.RawMessage, t reflect.Type, p string) *DecodeError {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	c := firstByte(raw)
	wrong := func(want string) *DecodeError {
		return &DecodeError{Class: ErrWrongType, Field: p, Detail: "want " + want + ", got " + describe(raw)}
	}
	switch {
	case t == objectType:
		if c != '{' {
			return wrong("an object")
		}
	case t == timeType:
		var s string
		if c != '"' || json.Unmarshal(raw, &s) != nil {
			return wrong("an RFC 3339 time string")
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return &DecodeError{Class: ErrWrongType, Field: p, Detail: "want an RFC 3339 time, got " + describe(raw)}
		}
	case t.Kind() == reflect.Struct:
		if c != '{' {
			return wrong("an object")
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return wrong("an object")
		}
		return checkObject(obj, t, p)
	case t.Kind() == reflect.Slice:
		if c != '[' {
			return wrong("an array")
		}
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return wrong("an array")
		}
		for i, it := range items {
			if isNull(it) {
				return &DecodeError{Class: ErrMissingField, Field: fmt.Sprintf("%s[%d]", p, i), Detail: "null item in a list"}
			}
			if err := checkValue(it, t.Elem(), fmt.Sprintf("%s[%d]", p, i)); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Map:
		if c != '{' {
			return wrong("an object")
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return wrong("an object")
		}
		for k, v := range obj {
			if isNull(v) {
				return &DecodeError{Class: ErrMissingField, Field: join(p, k), Detail: "null value"}
			}
			if err := checkValue(v, t.Elem(), join(p, k)); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.String:
		if c != '"' {
			return wrong("a string")
		}
	case t.Kind() == reflect.Bool:
		if c != 't' && c != 'f' {
			return wrong("a boolean")
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Float64:
		if c != '-' && (c < '0' || c > '9') {
			return wrong("a number")
		}
	}
	return nil
}

// Encode turns a frame into the bytes of one text frame: a JSON object whose first field is "type".
// Lists are never encoded as null.
func Encode(f Frame) ([]byte, error) {
	if f == nil {
		return nil, errors.New("protocol: encode a nil frame")
	}
	if u, ok := f.(Unknown); ok {
		return append([]byte(nil), u.Raw...), nil
	}
	if u, ok := f.(*Unknown); ok {
		return append([]byte(nil), u.Raw...), nil
	}
	body, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("protocol: encode %s: %w", f.FrameType(), err)
	}
	if len(body) < 2 || body[0] != '{' {
		return nil, fmt.Errorf("protocol: encode %s: not an object", f.FrameType())
	}
	var b bytes.Buffer
	b.Grow(len(body) + 16 + len(f.FrameType()))
	b.WriteString(`{"type":`)
	tb, _ := json.Marshal(string(f.FrameType()))
	b.Write(tb)
	if len(body) > 2 {
		b.WriteByte(',')
	}
	b.Write(body[1:])
	return b.Bytes(), nil
}

func jsonName(sf reflect.StructField) (name string, optional bool) {
	tag := sf.Tag.Get("json")
	if tag == "" {
		return sf.Name, false
	}
	parts := strings.Split(tag, ",")
	name = parts[0]
	if name == "" {
		name = sf.Name
	}
	for _, o := range parts[1:] {
		if o == "omitempty" || o == "omitzero" {
			optional = true
		}
	}
	return name, optional
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func firstByte(raw json.RawMessage) byte {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c
	}
	return 0
}

func isNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

func describe(raw json.RawMessage) string {
	switch firstByte(raw) {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}
