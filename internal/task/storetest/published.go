package storetest

import (
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

func testMarkPublished(e *env) {
	e.run("marks a finished task once and leaves its version", func(e *env) {
		tk := e.create(e.newTask(e.id("owner"), deviceNames(1)))
		if err := e.store.MarkPublished(e.ctx, tk.ID); !task.IsCode(err, task.CodeConflict) {
			e.t.Fatalf("MarkPublished of a pending task = %v, want CodeConflict", err)
		}
		if e.get(tk.ID).Published {
			e.t.Fatal("a refused MarkPublished set the flag")
		}
		done := e.move(tk, task.StatusCancelled, time.Hour)
		if done.Published {
			e.t.Fatal("a task is published before anyone marked it")
		}
		for range 2 { // marking twice is not an error
			if err := e.store.MarkPublished(e.ctx, tk.ID); err != nil {
				e.t.Fatalf("MarkPublished = %v", err)
			}
		}
		want := *done
		want.Published = true
		sameTask(e.t, "published task", e.get(tk.ID), &want)
	})

	e.run("an unknown task is not found", func(e *env) {
		if err := e.store.MarkPublished(e.ctx, e.id("missing")); !task.IsCode(err, task.CodeNotFound) {
			e.t.Fatalf("MarkPublished of an unknown task = %v, want CodeNotFound", err)
		}
	})
}
