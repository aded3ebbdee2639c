package operator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzJSONScan: the walk of a valid document reads it as encoding/json
// does: each object's members (the last of a repeated key), each list's
// elements.
func FuzzJSONScan(f *testing.F) {
	for _, s := range []string{
		`{"id":"a","type":"k8s","active":true,"n":-1.5e3,"x":null}`,
		`{"i\u0064":"a","id":"b","o":{"p":[1,{"q":"]}"}]},"s":"\"\\"}`,
		` [ {"id" : "a"} , null , 7 , "s" , [ ] , { } , {"k":"\ud800"} ] `,
		"{\"\xff\":1,\"é\":\"\xfe\"}",
		`[]`, `{}`, `"x"`,
	} {
		f.Add([]byte(s))
	}
	// Objects longer than what is left of the members' shared array.
	var long bytes.Buffer
	long.WriteString("[")
	for r := range 300 {
		if r > 0 {
			long.WriteString(",")
		}
		long.WriteString(`{"id":"e"`)
		n := r % 7
		if r == 150 || r == 151 {
			n = 1500
		}
		for m := range n {
			fmt.Fprintf(&long, `,"k%d":%d`, m, m)
		}
		long.WriteString("}")
	}
	f.Add(append(long.Bytes(), ']'))
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return
		}
		i := skipSpace(data, 0)
		switch data[i] {
		case '{':
			ms, end := members(data, i, nil)
			if skipSpace(data, end) != len(data) {
				t.Fatalf("object ends at %d of %d", end, len(data))
			}
			compareObject(t, data, jsonRecord{object: true, members: ms})
		case '[':
			var want []json.RawMessage
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatal(err)
			}
			got := records(data, i)
			if len(got) != len(want) {
				t.Fatalf("%d elements, encoding/json %d", len(got), len(want))
			}
			for k, r := range got {
				if r.object != (want[k][0] == '{') {
					t.Fatalf("element %d: object %v, encoding/json has %s", k, r.object, want[k])
				}
				if r.object {
					compareObject(t, want[k], r)
				}
			}
		}
	})
}

// compareObject checks r against encoding/json's reading of the object raw.
func compareObject(t *testing.T, raw []byte, r jsonRecord) {
	t.Helper()
	var want map[string]json.RawMessage
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	got := map[string]json.RawMessage{}
	for _, m := range r.members {
		got[string(m.key)] = m.value
	}
	for k, v := range got {
		if g, ok := r.get(k); !ok || !bytes.Equal(g, v) {
			t.Fatalf("get(%q) = %s, %v; want the last, %s", k, g, ok, v)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("members of %s (-encoding/json +walk):\n%s", raw, diff)
	}
}
