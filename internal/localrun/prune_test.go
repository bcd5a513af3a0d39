package localrun

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestPruneRemovesTheFilesOfForgottenTasksOnly(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	r, err := New(Config{ScriptRoot: t.TempDir(), DataDir: data, Devices: newFakeStore(), NoCgroups: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Shutdown(context.Background()) })
	for _, dir := range []string{"output/gone/d1", "work/gone/d1", "output/kept/d1", "work/kept/d1", "work/onlywork/d1"} {
		if err := os.MkdirAll(filepath.Join(data, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(_ context.Context, id string) (bool, error) { return id == "kept", nil }
	n, err := r.Prune(context.Background(), exists)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("pruned %d tasks, want 2 (gone, onlywork)", n)
	}
	for dir, want := range map[string]bool{"output/gone": false, "work/gone": false, "work/onlywork": false,
		"output/kept/d1": true, "work/kept/d1": true} {
		_, err := os.Stat(filepath.Join(data, dir))
		if got := err == nil; got != want {
			t.Errorf("%s exists = %v, want %v", dir, got, want)
		}
	}
}
