package httpapi

import "sync"

// streams counts the event streams and long-polls open at once, in all and per owner. Each
// holds a connection and a goroutine for up to minutes, so a cap keeps one caller, or many,
// from holding them all.
type streams struct {
	mu            sync.Mutex
	max, perOwner int // 0: no cap
	open          int
	openByOwner   map[string]int
}

func newStreams(max, perOwner int) *streams {
	return &streams{max: max, perOwner: perOwner, openByOwner: make(map[string]int)}
}

// acquire counts one more stream of owner, unless a cap is reached. The caller calls release
// once the stream has ended.
func (s *streams) acquire(owner string) (release func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.max > 0 && s.open >= s.max || s.perOwner > 0 && s.openByOwner[owner] >= s.perOwner {
		return nil, false
	}
	s.open++
	s.openByOwner[owner]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.open--
			if s.openByOwner[owner]--; s.openByOwner[owner] == 0 {
				delete(s.openByOwner, owner)
			}
		})
	}, true
}
