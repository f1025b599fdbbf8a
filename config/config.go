// Package config owns the daemon's YAML configuration: its keys, their
// defaults and their validation. It never touches the network, the store or
// the spool; a Config it returns is complete and checked.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"
	// The home's time zone (timezone) must load on a robot whose image
	// has no /usr/share/zoneinfo: Go's copy of the zone database is the
	// fallback (about 450 KB).
	_ "time/tzdata"

	"gopkg.in/yaml.v3"

	"github.com/aibo-privacy/aibo-privacyd/internal/paths"
	"github.com/aibo-privacy/aibo-privacyd/internal/semver"
)

// MaxDailyCap is the promise to owners: never more than 30 automatic photos a day.
const MaxDailyCap = 30

// Duration is a time.Duration written as "30s", "10m" in YAML.
type Duration time.Duration

// UnmarshalYAML parses Go duration syntax.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return &lineError{line: n.Line, msg: fmt.Sprintf("%q is not a duration (such as 30s, 10m, 720h)", s)}
	}
	*d = Duration(v)
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Config is the whole configuration file.
type Config struct {
	DeviceID  string    `yaml:"device_id"`
	DataDir   string    `yaml:"data_dir"`
	SpoolDir  string    `yaml:"spool_dir"`
	Timezone  string    `yaml:"timezone"`
	Region    string    `yaml:"region"`
	LogLevel  string    `yaml:"log_level"`
	MQTT      MQTT      `yaml:"mqtt"`
	Photos    Photos    `yaml:"photos"`
	Faces     Faces     `yaml:"faces"`
	Firmware  Firmware  `yaml:"firmware"`
	Diag      Diag      `yaml:"diag"`
	Security  Security  `yaml:"security"`
	Policy    Policy    `yaml:"policy"`
	Vision    Vision    `yaml:"vision"`
	Retention Retention `yaml:"retention"`
	location  *time.Location
}

// MQTT is the uplink to the cloud broker.
type MQTT struct {
	Broker        string   `yaml:"broker"`
	TLS           TLS      `yaml:"tls"`
	ChunkSize     int      `yaml:"chunk_size"`
	AckTimeout    Duration `yaml:"ack_timeout"`
	MaxQueueBytes int64    `yaml:"max_queue_bytes"`
}

// TLS holds PEM file paths for ssl:// brokers.
type TLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Photos configures automatic photography.
type Photos struct {
	DailyCap   int     `yaml:"daily_cap"`
	KeepPerDay int     `yaml:"keep_per_day"`
	MinScore   float64 `yaml:"min_score"`
	SelectAt   string  `yaml:"select_at"`
	// MaxFileBytes bounds a spool file read into memory (default 32 MiB).
	MaxFileBytes int64 `yaml:"max_file_bytes"`
}

// Faces configures enrollment and Patrol.
type Faces struct {
	EnrollmentSamples int      `yaml:"enrollment_samples"`
	EnrollmentTimeout Duration `yaml:"enrollment_timeout"`
	SightingInterval  Duration `yaml:"sighting_interval"`
}

// Firmware configures update offers.
type Firmware struct {
	Version string            `yaml:"version"`
	Keys    map[string]string `yaml:"keys"`
	// DownloadTimeout abandons a download that received nothing this long.
	DownloadTimeout Duration `yaml:"download_timeout"`
}

// Diag configures the technicians' socket.
type Diag struct {
	Socket      string   `yaml:"socket"`
	AllowedUIDs []uint32 `yaml:"allowed_uids"`
}

// Security holds the command signing keys.
type Security struct {
	CommandKeys map[string]string `yaml:"command_keys"`
}

// Policy holds the jurisdiction rules.
type Policy struct {
	// ProhibitedRegions lists ISO 3166-2 codes where face features are refused.
	ProhibitedRegions []string `yaml:"prohibited_regions"`
}

// Retention says how long records are kept before the janitor erases them.
type Retention struct {
	Sightings  Duration `yaml:"sightings"`
	CommandIDs Duration `yaml:"command_ids"`
	Audit      Duration `yaml:"audit"`
}

// Vision configures the vision worker process.
type Vision struct {
	// Worker is the aibo-vision binary; empty: the one beside the daemon's
	// own binary, else the installed one (internal/paths.WorkerFor).
	Worker string `yaml:"worker"`
	// ModelsDir holds OpenCV's cascades (Debian's opencv-data).
	ModelsDir string `yaml:"models_dir"`
	// FaceModelsDir holds the converted face nets and their SHA256SUMS
	// (tools/onnxgen; make setup writes them to build/models, the package
	// aibo-privacyd-models installs them where the default points).
	FaceModelsDir string `yaml:"face_models_dir"`
	// MemoryMax bounds the worker's memory, in bytes, in a cgroup of its
	// own when systemd delegates the service's cgroup (Delegate= in the
	// unit); 0 leaves the worker under the service's bound alone.
	MemoryMax int64 `yaml:"memory_max"`
}

// Default returns the configuration used for every key a file leaves out.
func Default() Config {
	return Config{
		DeviceID: "aibo-0001",
		DataDir:  paths.StateDir,
		SpoolDir: paths.SpoolDir,
		Timezone: "UTC",
		Region:   "US-CA",
		LogLevel: "info",
		MQTT: MQTT{
			// No broker: a robot must name its cloud's broker, never
			// fall back to one on localhost.
			ChunkSize:  65536,
			AckTimeout: Duration(30 * time.Second),
			// A day's keep_per_day (10) photos at 12 megapixels, each
			// within its bound (capture/clean.MaxBytes: 12 MB), and room
			// for everything else (agent's TestTheDefaultQueueHoldsADaysPhotos).
			MaxQueueBytes: 160 << 20,
		},
		Photos: Photos{DailyCap: 30, KeepPerDay: 10, MinScore: 0.25, SelectAt: "21:00", MaxFileBytes: 32 << 20},
		Faces: Faces{
			EnrollmentSamples: 5,
			EnrollmentTimeout: Duration(120 * time.Second),
			SightingInterval:  Duration(10 * time.Minute),
		},
		Firmware: Firmware{Version: "1.0.0", DownloadTimeout: Duration(10 * time.Minute)},
		Diag:     Diag{Socket: paths.DiagSocket},
		Policy:   Policy{ProhibitedRegions: []string{"US-IL"}},
		Vision:   Vision{ModelsDir: paths.OpenCVData, FaceModelsDir: paths.FaceModelsDir, MemoryMax: 768 << 20},
		Retention: Retention{
			Sightings:  Duration(30 * 24 * time.Hour),
			CommandIDs: Duration(30 * 24 * time.Hour),
			Audit:      Duration(365 * 24 * time.Hour),
		},
	}
}

// Load reads and validates the file at path.
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	return Parse(b)
}

// Parse decodes YAML strictly (an unknown key, a key given twice, a key in
// another case, a second document are errors) over the defaults and
// validates the result.
func Parse(b []byte) (Config, error) {
	c := Default()
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return Config{}, fmt.Errorf("config: %s", oneLine(err.Error()))
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("config: %w", keyedError(&root, err))
	}
	// yaml.v3 already refuses a key given twice and matches keys by exact
	// case; a second document would be read by nobody, so it is refused
	// rather than silently ignored.
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return Config{}, errors.New("config: more than one YAML document (a second --- section) is not allowed")
	}
	if err := c.validate(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

var (
	idPattern     = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	regionPattern = regexp.MustCompile(`^[A-Z]{2}(-[A-Z0-9]{1,3})?$`)
	hhmmPattern   = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)
)

// ValidRegion reports whether r looks like an ISO 3166-2 code (or a bare
// ISO 3166-1 country code).
func ValidRegion(r string) bool { return regionPattern.MatchString(r) }

func (c *Config) validate() error {
	if !idPattern.MatchString(c.DeviceID) {
		return fmt.Errorf("device_id %q must match [A-Za-z0-9_-]{1,64}", c.DeviceID)
	}
	if c.DataDir == "" || c.SpoolDir == "" {
		return errors.New("data_dir and spool_dir must be set")
	}
	loc, err := time.LoadLocation(c.Timezone)
	if err != nil || c.Timezone == "" || strings.EqualFold(c.Timezone, "local") {
		return fmt.Errorf("timezone %q is not an IANA time zone", c.Timezone)
	}
	c.location = loc
	if !ValidRegion(c.Region) {
		return fmt.Errorf("region %q is not an ISO 3166-2 code", c.Region)
	}
	for _, r := range c.Policy.ProhibitedRegions {
		if !ValidRegion(r) {
			return fmt.Errorf("policy.prohibited_regions: %q is not an ISO 3166-2 code", r)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level %q must be debug, info, warn or error", c.LogLevel)
	}
	if c.MQTT.Broker == "" {
		return errors.New("mqtt.broker must be set: the cloud's broker, tcp://host:1883 or ssl://host:8883")
	}
	if !strings.HasPrefix(c.MQTT.Broker, "tcp://") && !strings.HasPrefix(c.MQTT.Broker, "ssl://") {
		return fmt.Errorf("mqtt.broker %q must start with tcp:// or ssl://", c.MQTT.Broker)
	}
	if strings.HasPrefix(c.MQTT.Broker, "ssl://") && c.MQTT.TLS.CAFile == "" {
		return errors.New("mqtt.tls.ca_file is required for an ssl:// broker")
	}
	if (c.MQTT.TLS.CertFile == "") != (c.MQTT.TLS.KeyFile == "") {
		return errors.New("mqtt.tls.cert_file and key_file go together")
	}
	if c.MQTT.ChunkSize < 1024 || c.MQTT.ChunkSize > 131072 {
		return fmt.Errorf("mqtt.chunk_size %d must be within 1024..131072", c.MQTT.ChunkSize)
	}
	if c.MQTT.AckTimeout.D() < time.Second {
		return fmt.Errorf("mqtt.ack_timeout %s must be at least 1s", c.MQTT.AckTimeout.D())
	}
	if c.MQTT.MaxQueueBytes < 1<<20 {
		return fmt.Errorf("mqtt.max_queue_bytes %d must be at least 1 MiB", c.MQTT.MaxQueueBytes)
	}
	if c.Photos.DailyCap < 1 || c.Photos.DailyCap > MaxDailyCap {
		return fmt.Errorf("photos.daily_cap %d must be within 1..%d", c.Photos.DailyCap, MaxDailyCap)
	}
	if c.Photos.KeepPerDay < 0 || c.Photos.KeepPerDay > c.Photos.DailyCap {
		return fmt.Errorf("photos.keep_per_day %d must be within 0..daily_cap", c.Photos.KeepPerDay)
	}
	if c.Photos.MinScore < 0 || c.Photos.MinScore > 1 {
		return fmt.Errorf("photos.min_score %g must be within 0..1", c.Photos.MinScore)
	}
	if c.Vision.MemoryMax != 0 && c.Vision.MemoryMax < 64<<20 {
		return fmt.Errorf("vision.memory_max %d must be 0 or at least 64 MiB (the worker holds about 80 MB idle)", c.Vision.MemoryMax)
	}
	if !hhmmPattern.MatchString(c.Photos.SelectAt) {
		return fmt.Errorf("photos.select_at %q must be HH:MM", c.Photos.SelectAt)
	}
	if c.Photos.MaxFileBytes < 1<<20 || c.Photos.MaxFileBytes > 256<<20 {
		return fmt.Errorf("photos.max_file_bytes %d must be within 1 MiB..256 MiB", c.Photos.MaxFileBytes)
	}
	if c.Faces.EnrollmentSamples < 1 || c.Faces.EnrollmentSamples > 50 {
		return fmt.Errorf("faces.enrollment_samples %d must be within 1..50", c.Faces.EnrollmentSamples)
	}
	if c.Faces.EnrollmentTimeout.D() <= 0 {
		return errors.New("faces.enrollment_timeout must be positive")
	}
	if c.Faces.SightingInterval.D() < 0 {
		return errors.New("faces.sighting_interval must not be negative")
	}
	if _, err := semver.Parse(c.Firmware.Version); err != nil {
		return fmt.Errorf("firmware.version: %w", err)
	}
	if c.Firmware.DownloadTimeout.D() < time.Second {
		return errors.New("firmware.download_timeout must be at least 1s")
	}
	if _, err := PublicKeys(c.Firmware.Keys); err != nil {
		return fmt.Errorf("firmware.keys: %w", err)
	}
	if _, err := PublicKeys(c.Security.CommandKeys); err != nil {
		return fmt.Errorf("security.command_keys: %w", err)
	}
	for name, d := range map[string]Duration{"sightings": c.Retention.Sightings, "command_ids": c.Retention.CommandIDs, "audit": c.Retention.Audit} {
		if d.D() < time.Hour {
			return fmt.Errorf("retention.%s %s must be at least 1h", name, d.D())
		}
	}
	if c.Diag.Socket == "" {
		return errors.New("diag.socket must be set")
	}
	if len(c.Diag.Socket) > 100 {
		return fmt.Errorf("diag.socket path is %d bytes; a Unix socket path must stay under 100", len(c.Diag.Socket))
	}
	return nil
}

// Location is the time zone whose calendar day the cap counts.
func (c Config) Location() *time.Location {
	if c.location == nil {
		if loc, err := time.LoadLocation(c.Timezone); err == nil {
			return loc
		}
		return time.UTC
	}
	return c.location
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
