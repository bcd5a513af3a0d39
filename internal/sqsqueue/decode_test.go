package sqsqueue

import (
	"errors"
	"reflect"
	"testing"

	"github.com/fleetrun/fleetrun/internal/engine"
)

func TestDecode(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		body string
		want engine.Message // zero when the body is malformed
	}{
		{"dispatch", `{"v":1,"action":"dispatch","taskId":"T1","attempt":0}`,
			engine.Message{Version: 1, Action: engine.ActionDispatch, TaskID: "T1"}},
		{"poll with attempt", `{"v":1,"action":"poll","taskId":"T2","attempt":4}`,
			engine.Message{Version: 1, Action: engine.ActionPoll, TaskID: "T2", Attempt: 4}},
		{"cancel without attempt", `{"v":1,"action":"cancel","taskId":"T3"}`,
			engine.Message{Version: 1, Action: engine.ActionCancel, TaskID: "T3"}},
		{"trailing whitespace", "{\"v\":1,\"action\":\"poll\",\"taskId\":\"T4\"}\n ",
			engine.Message{Version: 1, Action: engine.ActionPoll, TaskID: "T4"}},
		{"empty", ``, engine.Message{}},
		{"not json", `dispatch T1`, engine.Message{}},
		{"null", `null`, engine.Message{}},
		{"array", `[]`, engine.Message{}},
		{"truncated", `{"v":1,"action":"poll","taskId":"T1"`, engine.Message{}},
		{"trailing object", `{"v":1,"action":"poll","taskId":"T1"}{}`, engine.Message{}},
		{"trailing garbage", `{"v":1,"action":"poll","taskId":"T1"} x`, engine.Message{}},
		{"no version", `{"action":"poll","taskId":"T1"}`, engine.Message{}},
		{"version 2 with a lease", `{"v":2,"action":"poll","taskId":"T5","attempt":1,"lease":1893456000000000000}`,
			engine.Message{Version: 2, Action: engine.ActionPoll, TaskID: "T5", Attempt: 1, Lease: 1893456000000000000}},
		{"version 2 without a lease", `{"v":2,"action":"dispatch","taskId":"T6"}`,
			engine.Message{Version: 2, Action: engine.ActionDispatch, TaskID: "T6"}},
		{"version 1 with a lease", `{"v":1,"action":"poll","taskId":"T1","lease":5}`, engine.Message{}},
		{"future version", `{"v":3,"action":"poll","taskId":"T1"}`, engine.Message{}},
		{"stop devices", `{"v":2,"action":"stop-devices","taskId":"T5","deviceIds":["web-1","web-2"]}`,
			engine.Message{Version: 2, Action: engine.ActionStopDevices, TaskID: "T5", DeviceIDs: []string{"web-1", "web-2"}}},
		{"stop devices naming none", `{"v":2,"action":"stop-devices","taskId":"T5","deviceIds":[]}`, engine.Message{}},
		{"stop devices in version 1", `{"v":1,"action":"stop-devices","taskId":"T5","deviceIds":["web-1"]}`, engine.Message{}},
		{"devices on a poll", `{"v":2,"action":"poll","taskId":"T1","deviceIds":["web-1"]}`, engine.Message{}},
		{"version as string", `{"v":"1","action":"poll","taskId":"T1"}`, engine.Message{}},
		{"unknown action", `{"v":1,"action":"reboot","taskId":"T1"}`, engine.Message{}},
		{"no action", `{"v":1,"taskId":"T1"}`, engine.Message{}},
		{"no task id", `{"v":1,"action":"dispatch"}`, engine.Message{}},
		{"empty task id", `{"v":1,"action":"dispatch","taskId":""}`, engine.Message{}},
		{"negative attempt", `{"v":1,"action":"poll","taskId":"T1","attempt":-1}`, engine.Message{}},
		{"unknown field", `{"v":1,"action":"poll","taskId":"T1","delay":5}`, engine.Message{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := Decode(c.body)
			if c.want.Action == "" {
				if !errors.Is(err, engine.ErrMalformed) {
					t.Fatalf("Decode(%q) err = %v, want ErrMalformed", c.body, err)
				}
				if !reflect.DeepEqual(got, engine.Message{}) {
					t.Errorf("Decode(%q) returned %+v with an error", c.body, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(%q): %v", c.body, err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("Decode(%q) = %+v, want %+v", c.body, got, c.want)
			}
		})
	}
}
