// Package firmware owns firmware update offers, chunk assembly, anti-rollback
// and staging (contract section 8). It verifies a signed offer, receives the
// image's chunks from MQTT onto disk as they arrive (so a restart resumes),
// checks size and sha256 of the whole, and stages it under data_dir/firmware/
// with the previous staged image kept as the fallback slot.
//
// It never applies an image: that belongs to the platform's updater, which
// reads staged.img and, beside it, staged.offer.json: the signed manifest
// and its signature exactly as offered, so the updater can verify the
// image itself. While a download is unfinished it asks the cloud for the
// missing chunks (firmware_need, through OnNeed) on every connect and after
// NeedAfter without a chunk; a manifest's chunk_sha256 lets it drop a bad
// chunk and ask for it again instead of losing the download. A version is
// never used in a file name: it is signed, but it is still text from the
// network. It never weakens privacy: it touches no personal data,
// and a manifest announcing a material policy change is handed to the
// daemon's StagedTx hook inside the very transaction that records the
// staging, so the policy pause (policy.PauseFor) commits together with the
// staged image or not at all. The package does not import the policy itself.
//
// Durable state lives in store.BucketFirmware: the highest version ever
// installed or staged (the anti-rollback mark), the staged and fallback
// slots, and the one download in progress with the set of chunks received.
// Chunk bytes live in one file per download under Dir/download/, written at
// their offset and fsynced before the chunk is recorded, so disk use for a
// download never exceeds the manifest's size.
package firmware

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/fsx"
	"github.com/aibo-privacy/aibo-privacyd/internal/semver"
	"github.com/aibo-privacy/aibo-privacyd/internal/strictjson"
)

// Reasons of a firmware_rejected event (contract section 8).
const (
	ReasonSignature = "signature" // bad signature or unknown key id
	ReasonRollback  = "rollback"  // not above the installed version and every one staged before
	ReasonDigest    = "digest"    // the assembled image's sha256 differs from the manifest
	ReasonSize      = "size"      // size or chunk layout impossible, or chunks that do not add up to it
)

// Limits of an image and its chunks.
const (
	// MaxChunk is the largest chunk accepted (the top of mqtt.chunk_size).
	MaxChunk = 131072
	// MinChunk is the smallest size of a chunk that is not the last one (the
	// bottom of mqtt.chunk_size); it bounds the number of chunks to track.
	MinChunk = 1024
	// MaxImageSize is the largest image offered.
	MaxImageSize = 512 << 20
	// DefaultDownloadTimeout abandons a download idle this long.
	DefaultDownloadTimeout = 10 * time.Minute
)

// Files under Config.Dir that the platform's updater reads.
const (
	StagedFile        = "staged.img"          // the staged image
	FallbackFile      = "fallback.img"        // the image staged before it
	StagedOfferFile   = "staged.offer.json"   // {"kid","manifest","sig"} of staged.img, as offered
	FallbackOfferFile = "fallback.offer.json" // the same for fallback.img
	downloadDir       = "download"            // one <random id>.part per download in progress
)

const (
	// maxManifestBytes bounds a manifest. With chunk_sha256 it holds about
	// 67 bytes a chunk; base64 in a command of at most 256 KiB leaves room
	// for about 2,900 chunks (180 MiB at 64 KiB chunks, 360 MiB at 128 KiB).
	maxManifestBytes = 192 << 10
	maxVersionLen    = 64 // also the longest policy version accept_policy takes
)

// Asking for missing chunks (contract v2, section 8).
const (
	// DefaultNeedAfter: a download this long without a chunk asks again.
	DefaultNeedAfter = 30 * time.Second
	// MaxNeed is the most chunk numbers one firmware_need names.
	MaxNeed = 1000
	// DefaultNeedDelay is how long after a connect firmware_need waits, so
	// that the link's subscriptions (made right after the connect hook
	// runs) are in place before the cloud answers.
	DefaultNeedDelay = time.Second
)

// Errors that are not rejections.
var (
	// ErrBadOffer wraps a malformed firmware_offer payload or manifest (the
	// daemon answers bad_request); nothing is recorded.
	ErrBadOffer = errors.New("firmware: malformed offer")
	// ErrNoDownload: a chunk for a version with no accepted offer; ignored.
	ErrNoDownload = errors.New("firmware: no accepted offer for this version")
	// ErrChunkRange: a chunk number at or beyond the manifest's chunk count;
	// the chunk is refused, the download goes on.
	ErrChunkRange = errors.New("firmware: chunk number beyond the manifest")
	// ErrBadChunk: a chunk whose sha256 or length differs from the
	// manifest's chunk_sha256; it is dropped, the download goes on and the
	// chunk is asked for again.
	ErrBadChunk = errors.New("firmware: chunk does not match the manifest's chunk_sha256")
)

// Manifest is the signed description of an image (contract section 8).
type Manifest struct {
	Version              string `json:"version"`
	Size                 int64  `json:"size"`
	SHA256               string `json:"sha256"` // lower-case hex
	Chunks               int    `json:"chunks"`
	PolicyVersion        string `json:"policy_version"`
	MaterialPolicyChange bool   `json:"material_policy_change"`
}

// Rejection refuses an offer or a download; Reason is one of the Reason*
// constants. It is the firmware_rejected event's {"version", "reason"}.
type Rejection struct {
	Version string
	Reason  string
	Detail  string // for logs; not part of the event
}

func (r *Rejection) Error() string {
	s := "firmware " + r.Version + " rejected: " + r.Reason
	if r.Detail != "" {
		s += " (" + r.Detail + ")"
	}
	return s
}

// Config configures a Manager.
type Config struct {
	Dir             string                       // data_dir/firmware
	Installed       string                       // firmware.version (semver)
	Keys            map[string]ed25519.PublicKey // firmware.keys, separate from the command keys
	DownloadTimeout time.Duration                // default DefaultDownloadTimeout
	Now             func() time.Time             // default time.Now
	Logger          *slog.Logger                 // default slog.Default()

	// StagedTx, when set, runs inside the transaction that records a staged
	// image, before it commits; an error aborts the staging (retried on the
	// next chunk, sweep or restart). The daemon pauses the consent-gated
	// features here when m.MaterialPolicyChange (policy.PauseFor with
	// m.PolicyVersion), so the pause cannot be lost to a crash.
	StagedTx func(tx *bolt.Tx, now time.Time, m Manifest) error
	// OnStaged is called after an image is staged and committed (emit
	// firmware_staged, republish the state). It runs on the caller's
	// goroutine (Chunk, HandleChunkMessage, Run), outside any transaction,
	// and should return quickly.
	OnStaged func(m Manifest)
	// RejectedTx, when set, runs inside the transaction that records a
	// download rejected (digest, size, or rollback).
	RejectedTx func(tx *bolt.Tx, now time.Time, version, reason string) error
	// OnRejected is called after a download is rejected (digest, size, or
	// rollback found at staging), for the firmware_rejected event. Offer
	// never calls it: the caller reports the *Rejection Offer returns.
	OnRejected func(version, reason string)

	// OnNeed is called with the download's version and its missing chunk
	// numbers (ascending, at most MaxNeed) for the firmware_need event:
	// NeedDelay after LinkUp and after NeedAfter without a chunk. It runs
	// on Run's goroutine and should return quickly.
	OnNeed func(version string, chunks []int)
	// NeedAfter defaults to DefaultNeedAfter, NeedDelay to DefaultNeedDelay.
	NeedAfter time.Duration
	NeedDelay time.Duration
}

// Manager owns the offers, the download in progress and the staged slots.
type Manager struct {
	st        *store.Store
	cfg       Config
	log       *slog.Logger
	installed semver.Version
	dlDir     string
	tick      time.Duration // how often Run looks for idle downloads

	// mu serialises chunk writes, staging, rejection and abandonment. It
	// is never taken while holding a store transaction (Offer runs inside
	// the caller's and does not take it), so it cannot deadlock with bbolt.
	mu      sync.Mutex
	ignored string // the last version whose chunks were ignored (logged once)

	actMu    sync.Mutex
	actID    string    // download whose last activity is actAt
	actAt    time.Time // last offer, chunk or start-up for actID
	askedAt  time.Time // when firmware_need last went out for actID
	pendMu   sync.Mutex
	pending  []outcome // found by New, reported when Run starts
	linkUp   chan struct{}
	testHook func() error
}

// Store layout inside store.BucketFirmware.
var (
	keyHighest   = []byte("highest")  // version string: highest ever installed or staged
	keyStaged    = []byte("staged")   // slot JSON
	keyFallback  = []byte("fallback") // slot JSON
	keyDownload  = []byte("download") // download JSON
	keyOffer     = []byte("offer")    // the download's offer {"kid","manifest","sig"} JSON, as signed
	keyChunkSums = []byte("chunk_sha256")
	bucketChunks = []byte("chunks") // store.Uint64Key(n) -> chunk length (8 bytes)
)

// keyChunkSums holds the download's chunk_sha256 as 32 bytes a chunk, when
// its manifest has them.

type slot struct {
	Manifest Manifest  `json:"manifest"`
	StagedAt time.Time `json:"staged_at"`
}

type download struct {
	ID        string    `json:"id"`
	File      string    `json:"file"` // under Dir/download/
	KID       string    `json:"kid"`
	Manifest  Manifest  `json:"manifest"`
	OfferedAt time.Time `json:"offered_at"`
	ChunkSize int64     `json:"chunk_size"` // 0 until the first chunk fixes it
	Received  int       `json:"received"`
	Bytes     int64     `json:"bytes"`
	// ChunkSums: the manifest carries chunk_sha256 (kept under keyChunkSums).
	ChunkSums bool `json:"chunk_sums,omitempty"`
}

// part is the download's file. File is a random id written by this
// package, but it is read back from the store: only its base name is used.
func (m *Manager) part(d download) string {
	return filepath.Join(m.dlDir, filepath.Base(d.File))
}

func (d *download) complete() bool { return d.Received == d.Manifest.Chunks }

// New opens the firmware state: it raises the durable anti-rollback mark to
// Installed if that is higher, removes files no record refers to, and
// resumes the download in progress (its idle clock restarts now). A
// download whose chunks had all arrived before a crash is finished here;
// the resulting OnStaged/OnRejected calls are made when Run starts.
func New(st *store.Store, cfg Config) (*Manager, error) {
	if cfg.Dir == "" {
		return nil, errors.New("firmware: Dir must be set")
	}
	inst, err := semver.Parse(cfg.Installed)
	if err != nil {
		return nil, fmt.Errorf("firmware: installed version: %w", err)
	}
	if cfg.DownloadTimeout <= 0 {
		cfg.DownloadTimeout = DefaultDownloadTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NeedAfter <= 0 {
		cfg.NeedAfter = DefaultNeedAfter
	}
	if cfg.NeedDelay <= 0 {
		cfg.NeedDelay = DefaultNeedDelay
	}
	m := &Manager{
		st:        st,
		cfg:       cfg,
		log:       cfg.Logger,
		installed: inst,
		dlDir:     filepath.Join(cfg.Dir, downloadDir),
		tick:      min(max(min(cfg.DownloadTimeout/10, cfg.NeedAfter/4), 10*time.Millisecond), 30*time.Second),
		linkUp:    make(chan struct{}, 1),
	}
	if err := os.MkdirAll(m.dlDir, 0o700); err != nil {
		return nil, fmt.Errorf("firmware: %w", err)
	}
	var d *download
	err = st.Update(func(tx *bolt.Tx) error {
		b, err := bucket(tx)
		if err != nil {
			return err
		}
		h, err := readHighest(b)
		if err != nil {
			return err
		}
		if h == nil || semver.Compare(inst, *h) > 0 {
			if err := b.Put(keyHighest, []byte(cfg.Installed)); err != nil {
				return err
			}
		}
		d, err = readDownload(b)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("firmware: %w", err)
	}
	m.sweepFiles(d)
	if d != nil {
		m.touch(d.ID)
		m.log.Info("firmware download resumed", "version", d.Manifest.Version, "received", d.Received, "chunks", d.Manifest.Chunks)
		if d.complete() {
			m.mu.Lock()
			out, err := m.finish(*d)
			m.mu.Unlock()
			if err != nil {
				m.log.Error("firmware finish resumed download", "version", d.Manifest.Version, "err", err)
			}
			m.pending = append(m.pending, out)
		}
	}
	return m, nil
}

// sweepFiles removes download files other than d's and leftover temporary
// files: a crash can leave them between a commit and a removal.
func (m *Manager) sweepFiles(d *download) {
	if ents, err := os.ReadDir(m.dlDir); err == nil {
		for _, e := range ents {
			if d != nil && e.Name() == filepath.Base(d.File) {
				continue
			}
			m.remove(filepath.Join(m.dlDir, e.Name()))
		}
	}
	if ents, err := os.ReadDir(m.cfg.Dir); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), fsx.TempPrefix) {
				m.remove(filepath.Join(m.cfg.Dir, e.Name()))
			}
		}
	}
}

func (m *Manager) remove(path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		m.log.Warn("firmware remove file", "file", filepath.Base(path), "err", err)
	}
}

// Offer verifies the payload of a firmware_offer command ({"kid",
// "manifest": std base64 of the manifest JSON bytes, "sig": std base64 of
// the ed25519 signature over exactly those bytes}) and, if valid, records
// the download durably inside tx (the command's transaction; nothing
// happens on disk until it commits).
//
// Errors: a *Rejection (signature, rollback, size) or an error wrapping
// ErrBadOffer (answer bad_request); other errors are internal. On any error
// nothing is written to tx. The caller emits firmware_rejected for a
// *Rejection and may audit it with RecordRejection.
//
// An offer for the version already downloading changes nothing and returns
// that download's manifest. A valid offer for any other version (above the
// anti-rollback mark) replaces the download in progress, whose file is
// removed once tx commits.
func (m *Manager) Offer(tx *bolt.Tx, now time.Time, payload []byte) (Manifest, error) {
	var p struct {
		KID      string `json:"kid"`
		Manifest string `json:"manifest"`
		Sig      string `json:"sig"`
	}
	if err := strictjson.Unmarshal(payload, &p); err != nil {
		return Manifest{}, fmt.Errorf("%w: payload is not {kid, manifest, sig} JSON", ErrBadOffer)
	}
	if p.Manifest == "" || p.Sig == "" {
		return Manifest{}, fmt.Errorf("%w: manifest and sig are required", ErrBadOffer)
	}
	raw, err := base64.StdEncoding.DecodeString(p.Manifest)
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: manifest is not standard base64", ErrBadOffer)
	}
	if len(raw) > maxManifestBytes {
		return Manifest{}, fmt.Errorf("%w: manifest over %d bytes", ErrBadOffer, maxManifestBytes)
	}
	sig, err := base64.StdEncoding.DecodeString(p.Sig)
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: sig is not standard base64", ErrBadOffer)
	}
	key, known := m.cfg.Keys[p.KID]
	switch {
	case !known:
		return Manifest{}, &Rejection{Version: versionHint(raw), Reason: ReasonSignature, Detail: "unknown key id"}
	case len(sig) != ed25519.SignatureSize || !ed25519.Verify(key, raw, sig):
		return Manifest{}, &Rejection{Version: versionHint(raw), Reason: ReasonSignature, Detail: "signature does not verify"}
	}
	man, sums, ver, err := parseManifest(raw)
	if err != nil {
		return Manifest{}, err
	}
	b, err := bucket(tx)
	if err != nil {
		return Manifest{}, err
	}
	highest, err := m.highest(b)
	if err != nil {
		return Manifest{}, err
	}
	if semver.Compare(ver, highest) <= 0 {
		return Manifest{}, &Rejection{Version: man.Version, Reason: ReasonRollback, Detail: "not above " + highest.String()}
	}
	cur, err := readDownload(b)
	if err != nil {
		return Manifest{}, err
	}
	if cur != nil && cur.Manifest.Version == man.Version {
		return cur.Manifest, nil // already downloading: idempotent
	}
	id, err := randomID()
	if err != nil {
		return Manifest{}, err
	}
	d := download{
		ID:        id,
		File:      id + ".part", // never the version: it is text from the network
		KID:       p.KID,
		Manifest:  man,
		OfferedAt: now.UTC(),
		ChunkSums: sums != nil,
	}
	if err := resetDownload(b, &d); err != nil {
		return Manifest{}, err
	}
	offer, err := json.Marshal(signedOffer{KID: p.KID, Manifest: p.Manifest, Sig: p.Sig})
	if err != nil {
		return Manifest{}, err
	}
	if err := b.Put(keyOffer, offer); err != nil {
		return Manifest{}, err
	}
	if sums != nil {
		if err := b.Put(keyChunkSums, sums); err != nil {
			return Manifest{}, err
		}
	}
	fields := map[string]string{"version": man.Version, "size": strconv.FormatInt(man.Size, 10), "kid": p.KID,
		"material_policy_change": strconv.FormatBool(man.MaterialPolicyChange)}
	if cur != nil {
		fields["replaced"] = cur.Manifest.Version
	}
	if _, err := audit.Append(tx, now, "firmware_offered", "", fields); err != nil {
		return Manifest{}, err
	}
	tx.OnCommit(func() {
		m.touch(d.ID)
		if cur != nil {
			m.remove(m.part(*cur))
		}
		m.log.Info("firmware offer accepted", "version", man.Version, "size", man.Size, "chunks", man.Chunks, "chunk_sha256", sums != nil)
	})
	return man, nil
}

// RecordRejection appends a firmware_rejected audit record for r inside tx
// (for an offer refused by Offer; rejections found while downloading are
// audited by the Manager itself).
func RecordRejection(tx *bolt.Tx, now time.Time, r *Rejection) error {
	_, err := audit.Append(tx, now, "firmware_rejected", "", map[string]string{"version": r.Version, "reason": r.Reason})
	return err
}

// Status is what the reported state and aiboctl status show.
type Status struct {
	Version  string    `json:"version"`            // installed (firmware.version)
	Staged   string    `json:"staged"`             // "" when nothing is staged
	Fallback string    `json:"fallback,omitempty"` // the image staged before
	Highest  string    `json:"highest"`            // anti-rollback mark
	Download *Progress `json:"download,omitempty"` // the download in progress
	// MaterialPolicyChange and PolicyVersion describe the staged image.
	MaterialPolicyChange bool   `json:"material_policy_change,omitempty"`
	PolicyVersion        string `json:"policy_version,omitempty"`
}

// Progress is a download in progress.
type Progress struct {
	Version  string `json:"version"`
	Chunks   int    `json:"chunks"`
	Received int    `json:"received"`
	Size     int64  `json:"size"`
	Bytes    int64  `json:"bytes"`
}

// Status reads the firmware state inside tx (a View or the caller's Update).
func (m *Manager) Status(tx *bolt.Tx) (Status, error) {
	s := Status{Version: m.cfg.Installed}
	b, err := bucket(tx)
	if err != nil {
		return s, err
	}
	if sl, err := readSlot(b, keyStaged); err != nil {
		return s, err
	} else if sl != nil {
		s.Staged = sl.Manifest.Version
		s.MaterialPolicyChange = sl.Manifest.MaterialPolicyChange
		s.PolicyVersion = sl.Manifest.PolicyVersion
	}
	if sl, err := readSlot(b, keyFallback); err != nil {
		return s, err
	} else if sl != nil {
		s.Fallback = sl.Manifest.Version
	}
	h, err := m.highest(b)
	if err != nil {
		return s, err
	}
	s.Highest = h.String()
	d, err := readDownload(b)
	if err != nil {
		return s, err
	}
	if d != nil {
		s.Download = &Progress{Version: d.Manifest.Version, Chunks: d.Manifest.Chunks, Received: d.Received, Size: d.Manifest.Size, Bytes: d.Bytes}
	}
	return s, nil
}

// signedOffer is a firmware_offer payload: what staged.offer.json holds.
type signedOffer struct {
	KID      string `json:"kid"`
	Manifest string `json:"manifest"` // standard base64 of the signed bytes
	Sig      string `json:"sig"`      // standard base64 of the ed25519 signature
}

// parseManifest checks a verified manifest and returns its chunk_sha256 as
// 32 bytes a chunk (nil when absent). Malformed fields wrap ErrBadOffer; an
// impossible size or chunk layout is a size Rejection.
func parseManifest(raw []byte) (Manifest, []byte, semver.Version, error) {
	var mj struct {
		Manifest
		ChunkSHA256 []string `json:"chunk_sha256"`
	}
	if err := strictjson.Unmarshal(raw, &mj); err != nil {
		return Manifest{}, nil, semver.Version{}, fmt.Errorf("%w: manifest is not JSON of the contract's shape", ErrBadOffer)
	}
	man, ver, err := checkManifest(mj.Manifest)
	if err != nil || mj.ChunkSHA256 == nil {
		return man, nil, ver, err
	}
	if len(mj.ChunkSHA256) != man.Chunks {
		return Manifest{}, nil, semver.Version{}, fmt.Errorf("%w: chunk_sha256 has %d entries for %d chunks", ErrBadOffer, len(mj.ChunkSHA256), man.Chunks)
	}
	sums := make([]byte, 0, 32*len(mj.ChunkSHA256))
	for i, h := range mj.ChunkSHA256 {
		sum, err := hex.DecodeString(h)
		if err != nil || len(sum) != 32 {
			return Manifest{}, nil, semver.Version{}, fmt.Errorf("%w: chunk_sha256[%d] must be 64 hex digits", ErrBadOffer, i)
		}
		sums = append(sums, sum...)
	}
	return man, sums, ver, nil
}

// checkManifest checks the contract's fields of a manifest.
func checkManifest(man Manifest) (Manifest, semver.Version, error) {
	if len(man.Version) > maxVersionLen {
		return Manifest{}, semver.Version{}, fmt.Errorf("%w: version over %d characters", ErrBadOffer, maxVersionLen)
	}
	ver, err := semver.Parse(man.Version)
	if err != nil {
		return Manifest{}, semver.Version{}, fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	if !topicSafe(topicVersion(man.Version)) {
		// The chunks could never arrive: refuse now rather than wait.
		return Manifest{}, semver.Version{}, fmt.Errorf("%w: version %q cannot be an MQTT topic level", ErrBadOffer, man.Version)
	}
	man.SHA256 = strings.ToLower(man.SHA256)
	if sum, err := hex.DecodeString(man.SHA256); err != nil || len(sum) != 32 {
		return Manifest{}, semver.Version{}, fmt.Errorf("%w: sha256 must be 64 hex digits", ErrBadOffer)
	}
	if len(man.PolicyVersion) > maxVersionLen {
		return Manifest{}, semver.Version{}, fmt.Errorf("%w: policy_version over %d characters", ErrBadOffer, maxVersionLen)
	}
	if man.MaterialPolicyChange && man.PolicyVersion == "" {
		return Manifest{}, semver.Version{}, fmt.Errorf("%w: material_policy_change needs a policy_version", ErrBadOffer)
	}
	if man.Size <= 0 || man.Size > MaxImageSize {
		return Manifest{}, semver.Version{}, &Rejection{Version: man.Version, Reason: ReasonSize, Detail: fmt.Sprintf("size %d not within 1..%d", man.Size, MaxImageSize)}
	}
	if _, _, ok := chunkBounds(man.Size, man.Chunks); !ok {
		return Manifest{}, semver.Version{}, &Rejection{Version: man.Version, Reason: ReasonSize,
			Detail: fmt.Sprintf("%d bytes cannot make %d chunks of %d..%d bytes", man.Size, man.Chunks, MinChunk, MaxChunk)}
	}
	return man, ver, nil
}

// topicSafe reports whether v can be published within a topic name: chunk
// topics are firmware/{version}/chunk/{n}. A "/" in a pre-release makes
// more topic levels, which is fine (HandleChunkMessage takes every level
// between firmware/ and /chunk/); wildcards, control characters and empty
// levels are not.
func topicSafe(v string) bool {
	if v == "" || strings.HasPrefix(v, "/") || strings.HasSuffix(v, "/") || strings.Contains(v, "//") {
		return false
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || r == '+' || r == '#' || r > 0x7e {
			return false
		}
	}
	return true
}

// chunkBounds is the range of chunk sizes C for which size bytes make
// exactly chunks chunks: chunks-1 of C bytes and a last one of 1..C bytes,
// with C within MinChunk..MaxChunk (a single chunk may be smaller).
func chunkBounds(size int64, chunks int) (lo, hi int64, ok bool) {
	switch {
	case chunks < 1 || int64(chunks) > size:
		return 0, 0, false
	case chunks == 1:
		return size, size, size <= MaxChunk
	}
	n := int64(chunks)
	lo = max(MinChunk, (size+n-1)/n)
	hi = min(MaxChunk, (size-1)/(n-1))
	return lo, hi, lo <= hi
}

// versionHint is the version an unverified manifest claims, for the
// rejection event only: "" unless it is a sane semver.
func versionHint(raw []byte) string {
	var v struct {
		Version string `json:"version"`
	}
	if json.Unmarshal(raw, &v) != nil || len(v.Version) > maxVersionLen {
		return ""
	}
	if _, err := semver.Parse(v.Version); err != nil {
		return ""
	}
	return v.Version
}

// topicVersion is the version as it appears in chunk topics: build metadata
// ("+...") cannot appear in an MQTT topic name, so it is dropped.
func topicVersion(v string) string {
	if i := strings.IndexByte(v, '+'); i >= 0 {
		return v[:i]
	}
	return v
}

func (m *Manager) touch(id string) {
	m.actMu.Lock()
	if m.actID != id {
		m.askedAt = time.Time{}
	}
	m.actID, m.actAt = id, m.cfg.Now()
	m.actMu.Unlock()
}

// lastActivity returns when download id was last active; a download not
// seen yet by this process starts its idle clock now.
func (m *Manager) lastActivity(id string) time.Time {
	m.actMu.Lock()
	defer m.actMu.Unlock()
	if m.actID != id {
		m.actID, m.actAt, m.askedAt = id, m.cfg.Now(), time.Time{}
	}
	return m.actAt
}

func bucket(tx *bolt.Tx) (*bolt.Bucket, error) {
	b := tx.Bucket(store.BucketFirmware)
	if b == nil {
		return nil, errors.New("firmware: store bucket missing (schema too old)")
	}
	return b, nil
}

// highest is the anti-rollback mark: the highest version ever installed or
// staged, and never below the installed one.
func (m *Manager) highest(b *bolt.Bucket) (semver.Version, error) {
	h, err := readHighest(b)
	if err != nil {
		return semver.Version{}, err
	}
	if h == nil || semver.Compare(m.installed, *h) > 0 {
		return m.installed, nil
	}
	return *h, nil
}

func readHighest(b *bolt.Bucket) (*semver.Version, error) {
	raw := b.Get(keyHighest)
	if raw == nil {
		return nil, nil
	}
	v, err := semver.Parse(string(raw))
	if err != nil {
		// Fail closed: an unreadable mark refuses every offer.
		return nil, fmt.Errorf("firmware: anti-rollback mark unreadable: %w", err)
	}
	return &v, nil
}

func readSlot(b *bolt.Bucket, key []byte) (*slot, error) {
	raw := b.Get(key)
	if raw == nil {
		return nil, nil
	}
	var s slot
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("firmware: %s slot unreadable: %w", key, err)
	}
	return &s, nil
}

func readDownload(b *bolt.Bucket) (*download, error) {
	raw := b.Get(keyDownload)
	if raw == nil {
		return nil, nil
	}
	var d download
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("firmware: download record unreadable: %w", err)
	}
	return &d, nil
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

// resetDownload records d as the download in progress with no chunk yet
// (its offer and chunk sums are the caller's to add).
func resetDownload(b *bolt.Bucket, d *download) error {
	if err := dropDownload(b); err != nil {
		return err
	}
	if _, err := b.CreateBucket(bucketChunks); err != nil {
		return err
	}
	return putJSON(b, keyDownload, d)
}

// dropDownload forgets the download in progress and its chunk set.
func dropDownload(b *bolt.Bucket) error {
	if b.Bucket(bucketChunks) != nil {
		if err := b.DeleteBucket(bucketChunks); err != nil {
			return err
		}
	}
	for _, k := range [][]byte{keyOffer, keyChunkSums} {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return b.Delete(keyDownload)
}
