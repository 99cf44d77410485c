package audit

import (
	"encoding/json"
	"strings"
	"testing"
)

// Every action the trail writes reads as words (issue 13.4); a new one
// without a name still reads as words, never as a dotted key alone.
func TestActionNames(t *testing.T) {
	for action, want := range map[string]string{
		"message.read": "Message opened", "auth.login": "Signed in", "message.accept": "Message accepted",
		"quarantine.preview": "Held message previewed", "some.new_thing": "Some new thing",
	} {
		if got := ActionName(action); got != want {
			t.Errorf("ActionName(%q) = %q, want %q", action, got, want)
		}
	}
	seen := map[string]string{}
	for k, v := range actionNames {
		if strings.Contains(v, ".") {
			t.Errorf("%s reads %q", k, v)
		}
		if o, dup := seen[v]; dup {
			t.Errorf("%s and %s both read %q: the filter could not tell them apart", k, o, v)
		}
		seen[v] = k
	}
	ch := ActionChoices()
	if len(ch) != len(actionGroups)+len(actionNames) || ch[0].Value != "auth.*" {
		t.Errorf("choices: %d", len(ch))
	}
}

// The JSON API and exports carry the words beside the key.
func TestEntryJSONHasActionName(t *testing.T) {
	b, err := json.Marshal(Entry{Seq: 7, Action: "message.read", Details: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got["action"] != "message.read" || got["action_name"] != "Message opened" || got["seq"] != float64(7) || got["details"] == nil {
		t.Errorf("entry JSON: %s", b)
	}
	var back Entry
	if err := json.Unmarshal(b, &back); err != nil || back.Action != "message.read" || back.Seq != 7 {
		t.Errorf("read back: %+v %v", back, err)
	}
}
