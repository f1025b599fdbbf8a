package diag

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Redacted replaces a value the diagnostic socket must not reveal.
const Redacted = "[redacted]"

// Redaction thresholds. Ids, hashes, versions and short details fit well
// under them; base64 images or templates and raw embeddings do not.
const (
	maxStringLen   = 512
	maxNumberArray = 64
)

// deniedKeys name content the socket must never carry, normalised by
// normKey. A string or array under such a key is redacted; numbers, booleans
// and objects are kept (an object is a container such as a per-kind count,
// e.g. {"face_template": {"count": 2}}, and is inspected in turn).
var deniedKeys = map[string]bool{
	"name": true, "displayname": true, "fullname": true, "firstname": true, "lastname": true,
	"nickname": true, "birthday": true, "birthdate": true, "dateofbirth": true, "dob": true,
	"template": true, "templates": true, "facetemplate": true, "embedding": true,
	"embeddings": true, "descriptor": true, "featurevector": true, "featuresvector": true,
	"image": true, "images": true, "imagebytes": true, "imagedata": true, "photo": true,
	"photobytes": true, "photodata": true, "jpeg": true, "jpg": true, "png": true,
	"pixels": true, "thumbnail": true, "thumb": true, "crop": true, "frame": true,
	"content": true, "data": true, "bytesb64": true, "raw": true,
}

func normKey(k string) string {
	k = strings.ToLower(k)
	return strings.NewReplacer("_", "", "-", "", " ", "", ".", "").Replace(k)
}

func deniedKey(k string) bool { return deniedKeys[normKey(k)] }

// redactValue round-trips v through JSON and redacts what the socket must
// not reveal. It returns the cleaned value and the JSON paths it redacted.
func redactValue(v any) (any, []string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, nil, fmt.Errorf("encode: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return nil, nil, fmt.Errorf("decode: %w", err)
	}
	var paths []string
	return redactWalk(generic, "", &paths), paths, nil
}

func redactWalk(v any, path string, paths *[]string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, child := range x {
			p := joinPath(path, k)
			if deniedKey(k) {
				switch child.(type) {
				case string, []any:
					x[k] = Redacted
					*paths = append(*paths, p)
					continue
				}
			}
			x[k] = redactWalk(child, p, paths)
		}
		return x
	case []any:
		if len(x) > maxNumberArray && allNumbers(x) {
			*paths = append(*paths, path)
			return Redacted
		}
		for i, child := range x {
			x[i] = redactWalk(child, fmt.Sprintf("%s[%d]", path, i), paths)
		}
		return x
	case string:
		if len(x) > maxStringLen {
			*paths = append(*paths, path)
			return Redacted
		}
		return x
	default:
		return v
	}
}

func allNumbers(xs []any) bool {
	for _, x := range xs {
		if _, ok := x.(json.Number); !ok {
			return false
		}
	}
	return true
}

func joinPath(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

// redactFields cleans an audit record's fields, returning a copy when
// something had to go (the backend's map is never modified).
func redactFields(f map[string]string, path string, paths []string) (map[string]string, []string) {
	var out map[string]string
	for k, v := range f {
		if deniedKey(k) || len(v) > maxStringLen {
			if out == nil {
				out = make(map[string]string, len(f))
				for k2, v2 := range f {
					out[k2] = v2
				}
			}
			out[k] = Redacted
			paths = append(paths, path+"."+k)
		}
	}
	if out == nil {
		return f, paths
	}
	return out, paths
}
