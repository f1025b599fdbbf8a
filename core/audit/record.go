package audit

import "time"

// Record is one entry of the audit chain. Fields carry opaque ids and
// decisions only: never names, birthdays, image bytes or templates.
type Record struct {
	Seq     uint64            `json:"seq"`
	At      time.Time         `json:"at"`
	Type    string            `json:"type"`
	Subject string            `json:"subject_id,omitempty"`
	Fields  map[string]string `json:"fields,omitempty"`
	Prev    string            `json:"prev"`
	Hash    string            `json:"hash"`
}

// Report is the verdict of Verify over the whole chain.
type Report struct {
	OK      bool   `json:"ok"`
	Records int    `json:"records"`
	BadSeq  uint64 `json:"bad_seq,omitempty"`
	Problem string `json:"problem,omitempty"`
}
