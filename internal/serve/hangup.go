package serve

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/fleetrun/fleetrun/internal/inventoryfile"
)

// reloadOnHangup reads the inventory file again on every SIGHUP, as daemons reload their
// configuration, until the returned function is called. A file that does not read is logged
// and the inventory stays as it was, so a typo never empties it.
func reloadOnHangup(inv *inventoryfile.File, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				if err := inv.Reload(); err != nil {
					log.Error("the inventory was not reloaded; the previous one stays", "err", err)
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}
