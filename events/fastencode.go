package events

import (
	"encoding/json"
	"strings"
	"time"
)

// appendEvent appends to b the structured-mode CloudEvent that sdkEvent
// writes, byte for byte, without building an event.Event: its attributes
// in sdk-go's order (specversion, id, source, type, subject,
// datacontenttype, time), the data as encoding/json writes it, then the
// extensions sorted by name. ok is false when the event is one that sdk-go
// would change or refuse (an id or subject with spaces around it, a source
// that it would write otherwise, data that does not marshal): the caller
// leaves it to sdkEvent. TestAppendEvent, TestAppendEventBytes and
// FuzzAppendEvent hold the two to the same bytes.
func appendEvent(b []byte, typ, source, id string, t time.Time, ceSubject string, ext extensions, data any) ([]byte, bool) {
	if id == "" || strings.TrimSpace(id) != id || strings.TrimSpace(ceSubject) != ceSubject || !sourceKept(source) {
		return nil, false
	}
	if _, raw := data.([]byte); raw {
		return nil, false // sdk-go takes bytes as they are, base64 in the event
	}
	d, err := json.Marshal(data)
	if err != nil {
		return nil, false
	}
	if b == nil {
		b = make([]byte, 0, len(d)+len(id)+len(source)+len(ceSubject)+len(ext.environment)+len(ext.requestID)+len(ext.traceParent)+len(typ)+320)
	}
	b = append(b, `{"specversion":"1.0","id":`...)
	b = appendSDKString(b, id)
	b = append(b, `,"source":`...)
	b = appendSDKString(b, source)
	b = append(b, `,"type":`...)
	b = appendSDKString(b, typ)
	if ceSubject != "" {
		b = append(b, `,"subject":`...)
		b = appendSDKString(b, ceSubject)
	}
	b = append(b, `,"datacontenttype":"`+ContentTypeJSON+`"`...)
	if !t.IsZero() {
		b = append(b, `,"time":"`...)
		b = t.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	b = append(b, `,"data":`...)
	b = append(b, d...)
	for _, x := range [...]struct{ name, value string }{
		{ExtEnvironment, ext.environment}, {ExtRequestID, ext.requestID}, {ExtTraceParent, ext.traceParent},
	} {
		if x.value != "" {
			b = append(b, ',', '"')
			b = append(b, x.name...)
			b = append(b, '"', ':')
			b = appendSDKString(b, x.value)
		}
	}
	return append(b, '}'), true
}

// appendSDKString appends s as a JSON string the way sdk-go's writer
// (json-iterator's ConfigFastest) does: '"' and '\' escaped with a
// backslash, \n, \r and \t by name, other control characters as \u00XX,
// everything else, invalid UTF-8 included, as it is.
func appendSDKString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= ' ' && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
