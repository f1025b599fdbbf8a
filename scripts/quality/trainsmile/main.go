// Command trainsmile retrains the smile network of capture/score/smile from
// the GENKI-4K train split and writes its weights (model.bin).
//
//	go run ./scripts/quality/trainsmile -data ../shared/testdata -o capture/score/smile/model.bin
//
// The test split is never used for training or for choosing anything: a
// held-out tenth of the train split picks nothing either, it only reports
// how training went. The test figure is printed once, at the end, as it falls.
package main

import (
	"flag"
	"fmt"
	"image"
	_ "image/jpeg"
	"log"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/capture/score/smile"
)

func main() {
	data := flag.String("data", "../shared/testdata", "folder holding genki4k/")
	out := flag.String("o", "capture/score/smile/model.bin", "where to write the weights")
	epochs := flag.Int("epochs", smile.DefaultTrainConfig.Epochs, "training epochs")
	val := flag.Float64("val", 0.1, "fraction of the train split held out to watch training (0: none)")
	lr := flag.Float64("lr", smile.DefaultTrainConfig.LearnRate, "peak learning rate")
	flag.Parse()
	if err := run(*data, *out, *epochs, *val, *lr); err != nil {
		log.Fatal(err)
	}
}

func run(data, out string, epochs int, valFrac, lr float64) error {
	root := filepath.Join(data, "genki4k")
	train, err := LoadSplit(filepath.Join(root, "train_folder"))
	if err != nil {
		return err
	}
	test, err := LoadSplit(filepath.Join(root, "test_folder"))
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewSource(42))
	rng.Shuffle(len(train), func(i, j int) { train[i], train[j] = train[j], train[i] })
	nVal := int(valFrac * float64(len(train)))
	held, fit := train[:nVal], train[nVal:]
	log.Printf("train %d, held out %d, test %d", len(fit), len(held), len(test))
	cfg := smile.DefaultTrainConfig
	cfg.Epochs = epochs
	cfg.LearnRate = lr
	start := time.Now()
	net := smile.Train(fit, cfg, func(epoch int, loss float64) {
		log.Printf("epoch %d loss %.4f (%s)", epoch+1, loss, time.Since(start).Round(time.Second))
	})
	m := smile.NewModel(net)
	if nVal > 0 {
		log.Printf("held-out balanced accuracy %.4f", BalancedAccuracy(m, held))
	}
	if err := os.WriteFile(out, net.Encode(), 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s (%d weights); GENKI-4K test balanced accuracy %.4f\n", out, net.NumParams(), BalancedAccuracy(m, test))
	return nil
}

// LoadSplit reads folder/0 (neutral) and folder/1 (smile).
func LoadSplit(folder string) ([]smile.Sample, error) {
	var s []smile.Sample
	for _, label := range []string{"0", "1"} {
		files, err := filepath.Glob(filepath.Join(folder, label, "*.jpg"))
		if err != nil {
			return nil, err
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("no images in %s", filepath.Join(folder, label))
		}
		sort.Strings(files)
		for _, f := range files {
			c, err := readCrop(f)
			if err != nil {
				return nil, err
			}
			s = append(s, smile.Sample{Crop: c, Smile: label == "1"})
		}
	}
	return s, nil
}

func readCrop(path string) (smile.Crop, error) {
	f, err := os.Open(path)
	if err != nil {
		return smile.Crop{}, err
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		return smile.Crop{}, fmt.Errorf("%s: %w", path, err)
	}
	return smile.CropFromImage(img), nil
}

// BalancedAccuracy is the mean of the recall on smiles and on neutral faces.
func BalancedAccuracy(m *smile.Model, s []smile.Sample) float64 {
	var hit, n [2]float64
	for _, x := range s {
		k := 0
		if x.Smile {
			k = 1
		}
		n[k]++
		if (m.Prob(x.Crop) > 0.5) == x.Smile {
			hit[k]++
		}
	}
	return (hit[0]/n[0] + hit[1]/n[1]) / 2
}
