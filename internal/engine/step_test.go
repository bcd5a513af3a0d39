package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/task"
)

func TestSetStepWritesTheStepOfARunningTaskOnly(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	tk := b.submit(t, "a", "b")
	ctx := context.Background()
	if err := b.eng.SetStep(ctx, tk.ID, "waiting for a free slot"); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.store.GetTask(ctx, tk.ID); got.CurrentStep != "queued" || got.Version != tk.Version {
		t.Fatalf("a pending task got step %q version %d; want it left alone", got.CurrentStep, got.Version)
	}
	b.handle(t, engine.ActionDispatch, tk.ID)
	running, _ := b.store.GetTask(ctx, tk.ID)
	b.clock.Advance(time.Minute)
	if err := b.eng.SetStep(ctx, tk.ID, "waiting for a free slot"); err != nil {
		t.Fatal(err)
	}
	waiting, _ := b.store.GetTask(ctx, tk.ID)
	if waiting.CurrentStep != "waiting for a free slot" || waiting.Status != task.StatusRunning ||
		waiting.Version != running.Version+1 || !waiting.StartedAt.Equal(*running.StartedAt) {
		t.Fatalf("after SetStep: %s %q version %d started %v; want running, the step, version %d, started %v",
			waiting.Status, waiting.CurrentStep, waiting.Version, waiting.StartedAt, running.Version+1, running.StartedAt)
	}
	// The same step again writes nothing; an empty one restores the plain running step.
	if err := b.eng.SetStep(ctx, tk.ID, "waiting for a free slot"); err != nil {
		t.Fatal(err)
	}
	if again, _ := b.store.GetTask(ctx, tk.ID); again.Version != waiting.Version {
		t.Errorf("a repeated step wrote version %d", again.Version)
	}
	if err := b.eng.SetStep(ctx, tk.ID, ""); err != nil {
		t.Fatal(err)
	}
	if back, _ := b.store.GetTask(ctx, tk.ID); back.CurrentStep != running.CurrentStep {
		t.Errorf("step %q after an empty SetStep, want %q", back.CurrentStep, running.CurrentStep)
	}
	if err := b.eng.SetStep(ctx, "01JDZZZZZZZZZZZZZZZZZZZZZZ", "x"); !task.IsCode(err, task.CodeNotFound) {
		t.Errorf("SetStep of an unknown task = %v, want not found", err)
	}
}
