package dynamo

import (
	"crypto/rand"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/fleetrun/fleetrun/internal/task"
)

func TestExpiryRoundsTTLUp(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		at       time.Time
		exp, ttl int64
	}{
		{time.Time{}, 0, 0},
		{time.Unix(1700000000, 0), 1700000000 * 1e9, 1700000000},
		{time.Unix(1700000000, 1), 1700000000*1e9 + 1, 1700000001},
		{time.Unix(1700000000, 999999999), 1700000000*1e9 + 999999999, 1700000001},
	} {
		exp, ttl := expiry(c.at)
		if exp != c.exp || ttl != c.ttl {
			t.Errorf("expiry(%v) = %d, %d; want %d, %d", c.at, exp, ttl, c.exp, c.ttl)
		}
		// DynamoDB may delete at ttl; the item must have expired by then.
		if ttl != 0 && !expired(exp, time.Unix(ttl, 0)) {
			t.Errorf("expiry(%v): an item is deleted at %d before it expires", c.at, ttl)
		}
	}
	if expired(0, time.Now()) {
		t.Error("an item without exp expired")
	}
}

func TestOwnerSortKeyIsTimeOrder(t *testing.T) {
	t.Parallel()
	base := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	// Fractions of different printed lengths are where RFC 3339 strings sort wrongly.
	times := []time.Time{base, base.Add(500 * time.Millisecond), base.Add(time.Nanosecond), base.Add(time.Second),
		base.Add(120 * time.Microsecond), base.In(time.FixedZone("east", 3600)).Add(-time.Millisecond)}
	keys := make([]string, len(times))
	for i, at := range times {
		keys[i] = ownerSK(at, "id")
	}
	byTime := slices.Clone(times)
	slices.SortFunc(byTime, time.Time.Compare)
	slices.Sort(keys)
	for i, at := range byTime {
		if keys[i] != ownerSK(at, "id") {
			t.Fatalf("sort keys in string order %v do not follow time order %v", keys, byTime)
		}
	}
}

func randomIDs(t *testing.T, n, length int) []string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"
	out := make([]string, n)
	buf := make([]byte, length)
	for i := range out {
		if _, err := rand.Read(buf); err != nil {
			t.Fatal(err)
		}
		for j := range buf {
			buf[j] = alphabet[int(buf[j])%len(alphabet)]
		}
		out[i] = string(buf)
	}
	return out
}

func TestTaskItemRoundTrip(t *testing.T) {
	t.Parallel()
	nodes := make([]string, task.MaxDevices)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("i-%017x", i*104729)
	}
	at := time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.UTC)
	for _, c := range []struct {
		name      string
		devices   []string
		wantParts bool
	}{
		{"one device", []string{"dev-1"}, false},
		{"10,000 managed nodes", nodes, false},
		{"10,000 random 128-character local ids", randomIDs(t, task.MaxDevices, 128), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := &task.Task{ID: "01JD", Owner: "arn:aws:iam::1:user/x", Status: task.StatusCompleted, Version: 7,
				CreatedAt: at, UpdatedAt: at.Add(time.Second), StartedAt: new(at.Add(time.Millisecond)),
				CompletedAt: new(at.Add(time.Second)), ExpiresAt: at.Add(time.Hour),
				Request: task.Request{DeviceIDs: c.devices, ScriptURL: "s3://b/k.sh", Args: []string{},
					TimeoutSeconds: 60, MaxConcurrency: "10%", MaxErrors: "0"},
				Counts:      task.Counts{Total: len(c.devices), Succeeded: len(c.devices)},
				CurrentStep: "finished",
				Result:      &task.Result{SucceededDevices: c.devices[:1], FailedDevices: []string{}, CancelledDevices: []string{}, Reason: "r"}}
			item, parts, err := encodeTask(want)
			if err != nil {
				t.Fatal(err)
			}
			if (len(parts) > 0) != c.wantParts {
				t.Errorf("%d device id parts, want parts: %v", len(parts), c.wantParts)
			}
			if size := itemSize(item); size > 350<<10 {
				t.Errorf("task item is %d bytes; DynamoDB allows 400 KB", size)
			}
			for _, p := range parts {
				if len(p) > 350<<10 {
					t.Errorf("a device id part is %d bytes", len(p))
				}
			}
			got, err := decodeTask(item, parts)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decoded task differs:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// itemSize is an item's size as DynamoDB counts it, near enough: names plus values.
func itemSize(item map[string]types.AttributeValue) int {
	size := 0
	for k, v := range item {
		size += len(k)
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			size += len(v.Value)
		case *types.AttributeValueMemberB:
			size += len(v.Value)
		case *types.AttributeValueMemberN:
			size += len(v.Value)
		default:
			size += 8
		}
	}
	return size
}

func TestEncodeResultFitsTheItem(t *testing.T) {
	t.Parallel()
	ids := randomIDs(t, 3*task.ResultListCap, 128)
	r := &task.Result{SucceededDevices: ids[:1000], FailedDevices: ids[1000:2000], CancelledDevices: ids[2000:], Reason: "r"}
	blob, err := encodeResult(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(blob) > resultLimit {
		t.Fatalf("result is %d bytes, limit %d", len(blob), resultLimit)
	}
	var got task.Result
	if err := gunzipJSON(blob, &got); err != nil {
		t.Fatal(err)
	}
	if !got.Truncated || len(got.SucceededDevices) == 0 || !slices.Equal(got.SucceededDevices, ids[:len(got.SucceededDevices)]) {
		t.Errorf("a shortened result must keep a prefix of each list and say it is truncated: truncated %v, %d succeeded",
			got.Truncated, len(got.SucceededDevices))
	}
	if len(r.SucceededDevices) != 1000 {
		t.Error("encodeResult changed its argument")
	}
}

func TestChunkPlansRespectsTransactionLimits(t *testing.T) {
	t.Parallel()
	plans := func(n, size int) []devicePlan {
		out := make([]devicePlan, n)
		for i := range out {
			out[i] = devicePlan{id: fmt.Sprint(i), size: size}
		}
		return out
	}
	for _, c := range []struct {
		name  string
		plans []devicePlan
		sizes []int
	}{
		{"none", nil, nil},
		{"one", plans(1, 600), []int{1}},
		{"a full transaction", plans(99, 600), []int{99}},
		{"250 small", plans(250, 600), []int{99, 99, 52}},
		{"large outputs", plans(10, 1<<20), []int{3, 3, 3, 1}},
	} {
		chunks := chunkPlans(c.plans)
		var sizes []int
		var all []devicePlan
		for _, ch := range chunks {
			sizes = append(sizes, len(ch))
			total := 0
			for _, p := range ch {
				total += p.size
			}
			if len(ch)+1 > transactMax || (len(ch) > 1 && total > transactBudget) {
				t.Errorf("%s: a chunk of %d devices and %d bytes breaks a transaction limit", c.name, len(ch), total)
			}
			all = append(all, ch...)
		}
		if !slices.Equal(sizes, c.sizes) {
			t.Errorf("%s: chunk sizes %v, want %v", c.name, sizes, c.sizes)
		}
		if len(all) != len(c.plans) {
			t.Errorf("%s: %d plans chunked into %d", c.name, len(c.plans), len(all))
		}
	}
}
