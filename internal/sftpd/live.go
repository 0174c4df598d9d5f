package sftpd

import "time"

// SessionInfo describes one live SSH session (`securefsd session list`).
type SessionInfo struct {
	ID      string // the session's id in audit records
	User    string
	Remote  string
	Start   time.Time
	Bytes   int64  // file bytes of completed transfers, both directions
	Current string // the last file a transfer used
}

// Sessions lists the logged-in SSH sessions.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []SessionInfo
	for c := range s.conns {
		ss := c.sess.Load()
		if ss == nil {
			continue
		}
		si := SessionInfo{ID: ss.id, User: ss.user, Remote: ss.remote, Start: ss.start, Bytes: ss.read.Load() + ss.written.Load()}
		if p := ss.current.Load(); p != nil {
			si.Current = *p
		}
		out = append(out, si)
	}
	return out
}

// KillSession ends the SSH session id (its connection closes; open
// transfers fail); false if there is none.
func (s *Server) KillSession(id string) bool {
	return s.kill(func(ss *session) bool { return ss.id == id }) > 0
}

// KillUserSessions ends every SSH session of user and says how many.
func (s *Server) KillUserSessions(user string) int {
	return s.kill(func(ss *session) bool { return ss.user == user })
}

func (s *Server) kill(match func(*session) bool) int {
	s.mu.Lock()
	var victims []*session
	for c := range s.conns {
		if ss := c.sess.Load(); ss != nil && match(ss) {
			victims = append(victims, ss)
		}
	}
	s.mu.Unlock()
	for _, ss := range victims {
		ss.log.Warn("session killed by an administrator", "event", eventKilled, "session", ss.id)
		ss.kill()
	}
	return len(victims)
}

// eventKilled is the stable event name of a session an admin ended.
const eventKilled = "session_killed"

// using notes name as the session's current file.
func (ss *session) using(name string) {
	if name != "" {
		ss.current.Store(&name)
	}
}
