package ssmrun

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/fleetrun/fleetrun/internal/task"
)

// Isolating unknown instance ids.
//
// SSM refuses a whole SendCommand with InvalidInstanceId when any one of its instance ids is
// not a managed node it can send to (unknown, deregistered, terminated), and its message is
// not a reliable list of which. isolate therefore splits the refused batch: it sends one half;
// if SSM takes it, those devices run and the unknown id is in the other half, which is split
// in turn without being sent; if SSM refuses it, the unknown id is in that half, which is split
// in turn, and the other half is set aside. When one id stands alone it is the unknown one. The
// ids set aside are then sent together, and isolated the same way should SSM refuse them too
// (a second unknown id). A refused call runs nothing, so only SendCommands that SSM takes start
// devices, and no device is sent twice.
//
// For a batch of k ids of which b are unknown this costs at most ⌈log2 k⌉ refused calls per
// unknown id (one per halving) plus one call for the ids set aside, so at most
// 1 + b·(⌈log2 k⌉ + 1) SendCommands in all (MaxSendCommands): 8 for one unknown id in a batch
// of 50. No splitting can do with fewer in the worst case: ⌈log2 50⌉ = 6 halvings are needed to
// single out one id among 50, and when every half sent holds it, every one of those calls is
// refused and the other 49 devices still need a call of their own.
//
// Bookkeeping. The parts are recorded in the CommandLog beside the batches, under slots of
// their own (partSlot), with the comment "fleetrun task <id> batch <n> part <seq>" so that a
// retried dispatch finds a part that SSM took before a crash. A retried dispatch repeats the
// same splitting, skipping the parts already recorded, so it never sends a device twice.
// Once the batch is isolated, its own slot records a split marker naming the unknown ids,
// which is what tells a retried dispatch that the batch is done and Poll which devices are
// undeliverable.

// Slots of parts: a batch's own command is recorded under its batch number; part seq (from 1)
// of batch n under partBase + n·partsPerBatch + seq. A batch of 50 takes at most
// MaxSendCommands(50, 50) = 351 calls.
const (
	partBase      = 1 << 20
	partsPerBatch = 1 << 10
)

func partSlot(batch, seq int) int { return partBase + batch*partsPerBatch + seq }

// slotBatch returns the batch a slot belongs to, and the part's sequence number (0 for the
// batch's own slot).
func slotBatch(slot int) (batch, seq int) {
	if slot < partBase {
		return slot, 0
	}
	return (slot - partBase) / partsPerBatch, (slot - partBase) % partsPerBatch
}

// MaxSendCommands is the most SendCommands one batch of k instance ids takes when b of them
// are unknown to SSM (see isolate).
func MaxSendCommands(k, b int) int {
	if b == 0 {
		return 1
	}
	halvings := 0
	for n := 1; n < k; n *= 2 {
		halvings++
	}
	return 1 + b*(halvings+1)
}

// isolate sends the ids of batch n, which SSM refused for an unknown instance id, in parts
// until every unknown id stands alone, and records the batch as split with those ids.
func (r *Runner) isolate(ctx context.Context, t *task.Task, obj S3Object, n int, ids []string, batches int, recorded map[int]string) error {
	seq := 0
	// sent sends part, and reports whether SSM took it.
	sent := func(part []string) (bool, error) {
		seq++
		if seq >= partsPerBatch {
			return false, fmt.Errorf("ssmrun: isolating unknown ids of %s batch %d took more than %d calls", t.ID, n, partsPerBatch)
		}
		_, err := r.sendPart(ctx, t, obj, n, seq, part, batches, recorded)
		switch {
		case unknownInstance(err):
			return false, nil
		case err != nil:
			// Throttling, a 5xx, or SSM refusing a part for a reason it did not give the batch:
			// the dispatch is tried again later and repeats the same splitting.
			return false, r.sendError(t, n, err)
		}
		return true, nil
	}
	var unknown []string
	suspect := ids // holds at least one unknown id
	for len(suspect) > 0 {
		var aside [][]string
		for len(suspect) > 1 {
			half, rest := suspect[:len(suspect)/2], suspect[len(suspect)/2:]
			ok, err := sent(half)
			if err != nil {
				return err
			}
			if ok {
				suspect = rest
			} else {
				aside = append(aside, rest)
				suspect = half
			}
		}
		unknown = append(unknown, suspect[0])
		suspect = nil
		if rest := slices.Concat(aside...); len(rest) > 0 {
			ok, err := sent(rest)
			if err != nil {
				return err
			}
			if !ok {
				suspect = rest
			}
		}
	}
	marker := splitMarker(t.ID, n, unknown)
	if err := r.cfg.CommandLog.RecordCommand(context.WithoutCancel(ctx), t.ID, n, marker); err != nil {
		return fmt.Errorf("ssmrun: record the split of %s batch %d: %w", t.ID, n, err)
	}
	recorded[n] = marker
	r.log.WarnContext(ctx, "SSM does not know some managed nodes of a batch; the rest were sent", "task_id", t.ID,
		"batch", n, "unknown", strings.Join(unknown, ","), "send_commands", seq+1)
	return nil
}

// A split batch's own slot holds a marker instead of a command id: the task and batch, which
// keep it unique, and the instance ids SSM does not know.
const splitPrefix = "split/"

func splitMarker(taskID string, n int, unknown []string) string {
	return fmt.Sprintf("%s%s/%d/%s", splitPrefix, taskID, n, strings.Join(unknown, ","))
}

// splitIDs returns the unknown ids of a split marker.
func splitIDs(commandID string) ([]string, bool) {
	rest, ok := strings.CutPrefix(commandID, splitPrefix)
	if !ok {
		return nil, false
	}
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) < 3 || parts[2] == "" {
		return []string{}, true
	}
	return strings.Split(parts[2], ","), true
}

// marker reports whether a recorded value is a refusal or split marker rather than a command.
func marker(commandID string) bool {
	_, refused := refusal(commandID)
	_, split := splitIDs(commandID)
	return refused || split || commandID == ""
}

// unknownNodeReason is an unknown id's reason.
const unknownNodeReason = "SSM does not know this managed node (it refused the command with InvalidInstanceId)"
