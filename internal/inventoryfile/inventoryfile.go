// Package inventoryfile is the inventory of `fleetrun serve --inventory FILE`: devices named
// with their tags in a YAML file, so that a submit may target them by tag, as SSM's managed
// nodes are on AWS. The file is read when the server starts and again on Reload (SIGHUP);
// a file that does not read leaves the inventory as it was.
//
//	devices:
//	  - id: web-1              # a local device id, unique in the file
//	    name: web-1.example    # optional
//	    platform: Linux        # optional
//	    tags: {Env: prod, Role: web}
//
// Every device of the file is online: the local runner reaches them all.
package inventoryfile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/fleetrun/fleetrun/internal/task"
)

// Options configure a File. The zero value is ready to use.
type Options struct {
	// Logger receives a line for each load; it discards them by default.
	Logger *slog.Logger
}

// File is an inventory read from a YAML file. It is safe for concurrent use.
type File struct {
	path string
	log  *slog.Logger

	mu      sync.RWMutex
	devices []task.InventoryDevice
}

// Open reads the inventory file at path.
func Open(path string, opts Options) (*File, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	f := &File{path: path, log: opts.Logger}
	if err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Reload reads the file again. When it cannot be read or is not a valid inventory, the
// inventory stays as it was and the error says why.
func (f *File) Reload() error {
	devices, err := load(f.path)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.devices = devices
	f.mu.Unlock()
	f.log.Info("inventory loaded", "path", f.path, "devices", len(devices))
	return nil
}

// fileFormat is the file as written.
type fileFormat struct {
	Devices []struct {
		ID       string            `yaml:"id"`
		Name     string            `yaml:"name"`
		Platform string            `yaml:"platform"`
		Tags     map[string]string `yaml:"tags"`
	} `yaml:"devices"`
}

// load reads and checks an inventory file: every id a valid local device id, once.
func load(path string) ([]task.InventoryDevice, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("inventoryfile: %w", err)
	}
	var ff fileFormat
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	// An empty file is an empty inventory: the decoder says io.EOF.
	if err := dec.Decode(&ff); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("inventoryfile: %s: %w", path, err)
	}
	seen := make(map[string]int, len(ff.Devices))
	devices := make([]task.InventoryDevice, 0, len(ff.Devices))
	var errs []error
	for i, d := range ff.Devices {
		switch first, dup := seen[d.ID]; {
		case !task.ValidLocalID(d.ID):
			errs = append(errs, fmt.Errorf("device %d: %q is not a valid device id (must match %s)", i+1, d.ID, task.LocalDeviceID))
		case dup:
			errs = append(errs, fmt.Errorf("device %d: %q is already device %d", i+1, d.ID, first+1))
		default:
			seen[d.ID] = i
		}
		for k := range d.Tags {
			if k == "" {
				errs = append(errs, fmt.Errorf("device %d (%s): a tag has no name", i+1, d.ID))
			}
		}
		tags := d.Tags
		if tags == nil {
			tags = map[string]string{}
		}
		devices = append(devices, task.InventoryDevice{ID: d.ID, Name: d.Name, Platform: d.Platform,
			PingStatus: task.PingOnline, Tags: tags})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("inventoryfile: %s: %w", path, err)
	}
	return devices, nil
}

// Resolve implements engine.Inventory: the devices that match every target, in the file's
// order. Every device is online, so r.IncludeOffline changes nothing.
func (f *File) Resolve(ctx context.Context, r task.Resolution) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	var ids []string
	for _, d := range f.devices {
		if d.Matches(r.Targets) {
			ids = append(ids, d.ID)
			if r.Limit > 0 && len(ids) == r.Limit {
				break
			}
		}
	}
	return ids, nil
}

// List implements engine.Inventory: the devices that match q's targets, in the file's order.
// The cursor is the position of the next device to look at; a reload between two pages may
// shift it.
func (f *File) List(ctx context.Context, q task.InventoryQuery) (*task.InventoryPage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	start := 0
	if q.Cursor != "" {
		n, err := strconv.Atoi(q.Cursor)
		if err != nil || n < 0 {
			return nil, task.BadCursor()
		}
		start = n
	}
	limit := task.PageSize(q.Limit)
	f.mu.RLock()
	defer f.mu.RUnlock()
	page := &task.InventoryPage{Devices: []task.InventoryDevice{}}
	for i := start; i < len(f.devices); i++ {
		d := f.devices[i]
		if !d.Matches(q.Targets) {
			continue
		}
		if len(page.Devices) == limit {
			page.Next = strconv.Itoa(i)
			break
		}
		page.Devices = append(page.Devices, d)
	}
	return page, nil
}
