package httpapi

import (
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/task"
)

// inventory is GET /devices?tag:Env=prod&tag:Role=web,db&limit=&cursor=: the devices a submit
// may target, locally the inventory file's and on AWS the managed nodes, with their tags. Each
// tag:<name> parameter is a target: the device's tag must have one of the comma-separated
// values, and every such parameter must hold (AND), as for a submit's targets.
func (h *handler) inventory(w http.ResponseWriter, r *http.Request, _ task.Caller) {
	q := r.URL.Query()
	var p task.QueryParser
	var targets []task.Target
	for _, name := range slices.Sorted(maps.Keys(q)) {
		switch {
		case name == "limit", name == "cursor":
		case strings.HasPrefix(name, task.TagKeyPrefix):
			if v, ok := single(&p, q, name); ok {
				targets = append(targets, task.Target{Key: name, Values: strings.Split(v, ",")})
			}
		default:
			p.Bad(name, "unknown parameter: filter with tag:<name>=<value>[,<value>…]")
		}
	}
	for _, t := range targets {
		// Each parameter is checked alone, so that its errors name the parameter.
		for _, f := range task.TargetErrors("", []task.Target{t}) {
			p.Bad(t.Key, "%s", f.Detail)
		}
	}
	limit, cursor := pageParams(&p, q)
	if err := p.Err(); err != nil {
		h.error(w, r, err)
		return
	}
	page, err := h.cfg.Engine.Inventory(r.Context(), task.InventoryQuery{Targets: targets, Limit: limit, Cursor: cursor})
	if err != nil {
		h.error(w, r, err)
		return
	}
	list := api.InventoryList{Items: make([]api.InventoryDevice, 0, len(page.Devices))}
	for _, d := range page.Devices {
		tags := d.Tags
		if tags == nil {
			tags = map[string]string{}
		}
		list.Items = append(list.Items, api.InventoryDevice{ID: d.ID, Name: d.Name, Platform: d.Platform,
			PingStatus: d.PingStatus, Tags: tags})
	}
	if page.Next != "" {
		var filters []string
		for _, t := range targets {
			filters = append(filters, url.QueryEscape(t.Key)+"="+url.QueryEscape(strings.Join(t.Values, ",")))
		}
		list.Next = nextURL(h.links(r).base+"/devices", filters, limit, page.Next)
		w.Header().Set("Link", "<"+list.Next+`>; rel="next"`)
	}
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, list)
}
