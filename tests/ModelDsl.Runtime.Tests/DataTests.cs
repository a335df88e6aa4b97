using System.Collections.Generic;
using System.Globalization;
using System.IO;
using ModelDsl.Runtime.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Tests;

/// <summary>
/// The dataset layer: CSV parsing against the real optdigits files and against malformed files, batching and
/// splitting (order checked against libtorch's own randperm), and the character corpus.
/// </summary>
public sealed class DataTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("modeldsl-data-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    // ---------------------------------------------------------------- CSV: optdigits

    [Fact]
    public void Csv_LoadsOptdigitsTraining_WithShapesLabelsAndFirstRow()
    {
        string path = Path.Combine(DigitsData, "optdigits.tra");
        using var data = CsvDataset.Load(path, new long[] { 1, 8, 8 }, LabelKind.ClassIndex);

        Assert.Equal(3823, data.Count);
        Assert.Equal(new long[] { 3823, 1, 8, 8 }, data.Features.shape);
        Assert.Equal(ScalarType.Float32, data.Features.dtype);
        Assert.Equal(new long[] { 3823 }, data.Labels.shape);
        Assert.Equal(ScalarType.Int64, data.Labels.dtype);
        Assert.Equal(0, data.Labels.min().item<long>());
        Assert.Equal(9, data.Labels.max().item<long>());
        Assert.Equal(0f, data.Features.min().item<float>());
        Assert.Equal(16f, data.Features.max().item<float>());

        // The first sample, read back through torch, is the first line of the file.
        var expected = File.ReadLines(path).First().Split(',').Select(v => float.Parse(v, CultureInfo.InvariantCulture)).ToArray();
        using var first = data.Features[0].flatten();
        Assert.Equal(expected[..64], first.data<float>().ToArray());
        Assert.Equal((long)expected[64], data.Labels[0].item<long>());

        // ...and the last sample is the last line (no row lost or shifted).
        var last = File.ReadLines(path).Last(l => l.Length > 0).Split(',').Select(v => float.Parse(v, CultureInfo.InvariantCulture)).ToArray();
        using var lastRow = data.Features[3822].flatten();
        Assert.Equal(last[..64], lastRow.data<float>().ToArray());
        Assert.Equal((long)last[64], data.Labels[3822].item<long>());
    }

    [Fact]
    public void Csv_LoadsOptdigitsTest()
    {
        using var data = CsvDataset.Load(Path.Combine(DigitsData, "optdigits.tes"), new long[] { 64 }, LabelKind.ClassIndex);
        Assert.Equal(new long[] { 1797, 64 }, data.Features.shape);
        Assert.Equal(new long[] { 1797 }, data.Labels.shape);
    }

    // ---------------------------------------------------------------- CSV: class labels against the model

    [Fact]
    public void LabelOutOfRange_IsReportedAtItsFileLine()
    {
        // CRLF line ends and trailing blank lines: rows are still lines 1..N.
        string path = Write("labels.csv", "1,2,0\r\n3,4,9\r\n5,6,3\r\n7,8,12\r\n9,0,1\r\n1,1,11\r\n\r\n\r\n");
        using var data = CsvDataset.Load(path, new long[] { 2 }, LabelKind.ClassIndex);

        var error = CsvDataset.FindLabelOutOfRange(data, 10, path, "DigitsMlp");

        Assert.NotNull(error);
        Assert.Equal(4, error!.Line);
        Assert.Equal(path, error.Path);
        Assert.Equal($"{path}:4: class label 12 is out of range: DigitsMlp outputs 10 classes (labels 0..9)", error.Message);
    }

    [Fact]
    public void LabelsWithinTheClasses_AreNotAnError()
    {
        string path = Write("labels.csv", "1,2,0\n3,4,9\n");
        using var data = CsvDataset.Load(path, new long[] { 2 }, LabelKind.ClassIndex);
        Assert.Null(CsvDataset.FindLabelOutOfRange(data, 10, path));
        Assert.Equal(2, CsvDataset.FindLabelOutOfRange(data, 9, path)!.Line);
    }

    [Fact]
    public void NegativeLabelInATensorDataset_IsFoundToo()
    {
        using var data = new TensorDataset(zeros(3, 2), tensor(new long[] { 1, -1, 0 }));
        var error = CsvDataset.FindLabelOutOfRange(data, 2, "made.csv");
        Assert.Equal("made.csv:2: class label -1 is out of range: the model outputs 2 classes (labels 0..1)", error!.Message);
    }

    // ---------------------------------------------------------------- CSV: malformed files

    [Fact]
    public void Csv_WrongColumnCount_NamesFileAndLine()
    {
        string path = Write("short.csv", "1,2,3,0\n4,5,6,1\n7,8,2\n");
        var e = Assert.Throws<DataFormatException>(() => CsvDataset.Load(path, new long[] { 3 }, LabelKind.ClassIndex));
        Assert.Equal(path, e.Path);
        Assert.Equal(3, e.Line);
        Assert.Equal($"{path}:3: expected 4 values, found 3", e.Message);
    }

    [Fact]
    public void Csv_NotANumber_NamesLineAndToken()
    {
        string path = Write("text.csv", "1,2,3,0\r\n4,x1,6,1\r\n");
        var e = Assert.Throws<DataFormatException>(() => CsvDataset.Load(path, new long[] { 3 }, LabelKind.ClassIndex));
        Assert.Equal(2, e.Line);
        Assert.Equal(2, e.Column);
        Assert.Equal($"{path}:2: column 2: 'x1' is not a number", e.Message);

        // Missing values (UCI writes '?') and non-finite values are rejected the same way.
        Assert.Contains("'?' is not a number", Assert.Throws<DataFormatException>(() =>
            CsvDataset.Load(Write("missing.csv", "1,?,3,0\n"), new long[] { 3 }, LabelKind.ClassIndex)).Message);
        Assert.Contains("'NaN' is not a number", Assert.Throws<DataFormatException>(() =>
            CsvDataset.Load(Write("nan.csv", "1,NaN,3,0\n"), new long[] { 3 }, LabelKind.ClassIndex)).Message);
        Assert.Contains(":1: column 2: empty value", Assert.Throws<DataFormatException>(() =>
            CsvDataset.Load(Write("empty-value.csv", "1,,3,0\n"), new long[] { 3 }, LabelKind.ClassIndex)).Message);
    }

    [Fact]
    public void Csv_ClassLabels_MustBeWholeAndNonNegative()
    {
        var e = Assert.Throws<DataFormatException>(() =>
            CsvDataset.Load(Write("frac.csv", "1,2,0\n1,2,2.5\n"), new long[] { 2 }, LabelKind.ClassIndex));
        Assert.Equal(2, e.Line);
        Assert.Contains("class label '2.5' is not a whole non-negative number", e.Message);
        Assert.Throws<DataFormatException>(() =>
            CsvDataset.Load(Write("neg.csv", "1,2,-1\n"), new long[] { 2 }, LabelKind.ClassIndex));

        // The same values are fine as float targets.
        using var data = CsvDataset.Load(Write("float.csv", "1,2,2.5\n1.5e1,2,-1\n"), new long[] { 2 }, LabelKind.Float);
        Assert.Equal(ScalarType.Float32, data.Labels.dtype);
        Assert.Equal(new[] { 2.5f, -1f }, data.Labels.data<float>().ToArray());
        Assert.Equal(new[] { 1f, 2f, 15f, 2f }, data.Features.data<float>().ToArray());
    }

    [Fact]
    public void Csv_MissingFile_NamesTheFullPath()
    {
        string path = Path.Combine(_temp, "nowhere", "absent.csv");
        var e = Assert.Throws<FileNotFoundException>(() => CsvDataset.Load(path, new long[] { 3 }, LabelKind.ClassIndex));
        Assert.Contains(path, e.Message);
        Assert.Equal(path, e.FileName);
    }

    [Fact]
    public void Csv_SampleShapeMismatch_SaysBothCounts()
    {
        string path = Write("shape.csv", "1,2,3,0\n");
        var e = Assert.Throws<DataFormatException>(() => CsvDataset.Load(path, new long[] { 2, 2 }, LabelKind.ClassIndex));
        Assert.Equal(1, e.Line);
        Assert.Contains("[2, 2] needs 4 feature values per row, but the row has 3", e.Message);
    }

    [Fact]
    public void Csv_BlankLines_AllowedOnlyAtTheEnd()
    {
        using (var data = CsvDataset.Load(Write("trailing.csv", "1,2,0\n3,4,1\n\n\r\n  \n"), new long[] { 2 }, LabelKind.ClassIndex))
        {
            Assert.Equal(2, data.Count);
            Assert.Equal(new long[] { 0, 1 }, data.Labels.data<long>().ToArray());
        }
        using (var data = CsvDataset.Load(Write("no-newline.csv", "1,2,0\n3,4,1"), new long[] { 2 }, LabelKind.ClassIndex))
            Assert.Equal(2, data.Count);

        var e = Assert.Throws<DataFormatException>(() =>
            CsvDataset.Load(Write("gap.csv", "1,2,0\n\n3,4,1\n"), new long[] { 2 }, LabelKind.ClassIndex));
        Assert.Equal(2, e.Line);

        var empty = Assert.Throws<DataFormatException>(() =>
            CsvDataset.Load(Write("empty.csv", "\n\n"), new long[] { 2 }, LabelKind.ClassIndex));
        Assert.Equal(0, empty.Line);
        Assert.Contains("no data rows", empty.Message);
    }

    // ---------------------------------------------------------------- CSV: header rows and the label column

    [Fact]
    public void Csv_HeaderRow_IsDetected_AndSkipped()
    {
        // The file of issue 19: a header row of names, then numbers.
        string path = Write("train_header.csv", "t0,t1,t2,label\n1,2,3,0\n4,5,6,1\n");
        using var data = CsvDataset.Load(path, new long[] { 3 }, LabelKind.ClassIndex, null, out int headerRows);
        Assert.Equal(1, headerRows);
        Assert.Equal(2, data.Count);
        Assert.Equal(new[] { 1f, 2f, 3f, 4f, 5f, 6f }, data.Features.data<float>().ToArray());
        Assert.Equal(new long[] { 0, 1 }, data.Labels.data<long>().ToArray());

        // Quoted names and CRLF line ends, as spreadsheets write them.
        using var quoted = CsvDataset.Load(Write("quoted.csv", "\"a\",\"b\",\"y\"\r\n1,2,0.5\r\n"), new long[] { 2 }, LabelKind.Float);
        Assert.Equal(new[] { 0.5f }, quoted.Labels.data<float>().ToArray());
    }

    [Fact]
    public void Csv_FirstRowOfNumbers_IsData_UnlessAHeaderIsDeclared()
    {
        string path = Write("numeric-header.csv", "0,1,2\n1,2,0\n3,4,1\n");
        using (var data = CsvDataset.Load(path, new long[] { 2 }, LabelKind.ClassIndex))
            Assert.Equal(3, data.Count);
        using (var data = CsvDataset.Load(path, new long[] { 2 }, LabelKind.ClassIndex, new CsvOptions { Header = true }))
        {
            Assert.Equal(2, data.Count);
            Assert.Equal(new long[] { 0, 1 }, data.Labels.data<long>().ToArray());
        }
    }

    [Fact]
    public void Csv_NamedLabelColumn_MayBeAnyColumn_TheOthersAreTheFeaturesInOrder()
    {
        string path = Write("label-first.csv", "label,t0,t1\n1,5,6\n0,7,8\n");
        using var data = CsvDataset.Load(path, new long[] { 2 }, LabelKind.ClassIndex, new CsvOptions { LabelColumn = "label" });
        Assert.Equal(new long[] { 1, 0 }, data.Labels.data<long>().ToArray());
        Assert.Equal(new[] { 5f, 6f, 7f, 8f }, data.Features.data<float>().ToArray());

        // A named label column implies the header row, even one of numbers.
        using var numeric = CsvDataset.Load(Write("numeric-names.csv", "0,y,1\n5,1,6\n"), new long[] { 2 }, LabelKind.ClassIndex, new CsvOptions { LabelColumn = "y" });
        Assert.Equal(new[] { 5f, 6f }, numeric.Features.data<float>().ToArray());
        Assert.Equal(new long[] { 1 }, numeric.Labels.data<long>().ToArray());
    }

    [Fact]
    public void Csv_NamedLabelColumn_Errors_NameTheHeaderAndTheColumns()
    {
        string path = Write("no-label.csv", "t0,t1,target\n1,2,0\n");
        var e = Assert.Throws<DataFormatException>(() => CsvDataset.Load(path, new long[] { 2 }, LabelKind.ClassIndex, new CsvOptions { LabelColumn = "label" }));
        Assert.Equal(1, e.Line);
        Assert.Equal($"{path}:1: the header row has no column named 'label' (the label column); its columns are 't0', 't1', 'target'", e.Message);

        var off = Assert.Throws<DataFormatException>(() => CsvDataset.Load(path, new long[] { 2 }, LabelKind.ClassIndex, new CsvOptions { Header = false, LabelColumn = "target" }));
        Assert.Contains("needs a header row, but Header = false declares that line 1 is data", off.Message);

        var count = Assert.Throws<DataFormatException>(() => CsvDataset.Load(path, new long[] { 3 }, LabelKind.ClassIndex));
        Assert.Equal($"{path}:1: the header row names 3 columns, but sample shape [3] needs 3 feature columns and the label, 4 in all", count.Message);
    }

    [Fact]
    public void Csv_NotANumber_NamesTheColumnAndItsHeaderName()
    {
        string path = Write("bad-value.csv", "t0,t1,label\n1,2,0\n3,abc,1\n");
        var e = Assert.Throws<DataFormatException>(() => CsvDataset.Load(path, new long[] { 2 }, LabelKind.ClassIndex));
        Assert.Equal((3, 2), (e.Line, e.Column));
        Assert.Equal($"{path}:3: column 2 ('t1'): 'abc' is not a number", e.Message);

        // The label column too (here the named first one).
        var label = Assert.Throws<DataFormatException>(() => CsvDataset.Load(Write("bad-label.csv", "y,a\n1,2\nx,3\n"), new long[] { 1 }, LabelKind.ClassIndex, new CsvOptions { LabelColumn = "y" }));
        Assert.EndsWith(":3: column 1 ('y'): 'x' is not a number", label.Message);
    }

    [Fact]
    public void Csv_TextFirstRow_NotTakenForAHeader_SaysSoAndHowToDeclareOne()
    {
        // Mixed text and numbers: not detected (it might be a bad data row), and the error says how to declare it.
        string mixed = Write("mixed.csv", "t0,1,label\n1,2,0\n");
        var e = Assert.Throws<DataFormatException>(() => CsvDataset.Load(mixed, new long[] { 2 }, LabelKind.ClassIndex));
        Assert.Equal($"{mixed}:1: column 1: 't0' is not a number (line 1 mixes text and numbers, so it was not taken for a header row; " +
                     "if it is one, declare [Train(Header = true)] or pass --header)", e.Message);
        using (var declared = CsvDataset.Load(mixed, new long[] { 2 }, LabelKind.ClassIndex, new CsvOptions { Header = true }))
            Assert.Equal(1, declared.Count);

        // Header = false: the first row is data, and the error says that the declaration made it so.
        string named = Write("named.csv", "t0,t1,label\n1,2,0\n");
        var off = Assert.Throws<DataFormatException>(() => CsvDataset.Load(named, new long[] { 2 }, LabelKind.ClassIndex, new CsvOptions { Header = false }));
        Assert.Contains("'t0' is not a number (line 1 is read as data because Header = false declares no header row)", off.Message);

        // A later text row gets no such note.
        var later = Assert.Throws<DataFormatException>(() => CsvDataset.Load(Write("later.csv", "1,2,0\nt0,2,0\n"), new long[] { 2 }, LabelKind.ClassIndex));
        Assert.DoesNotContain("header", later.Message);
    }

    [Fact]
    public void Csv_HeaderOnly_HasNoDataRows_AndLabelLinesCountTheHeader()
    {
        var empty = Assert.Throws<DataFormatException>(() => CsvDataset.Load(Write("only-header.csv", "a,b,label\n"), new long[] { 2 }, LabelKind.ClassIndex));
        Assert.Contains("no data rows (line 1 is its header row)", empty.Message);

        string path = Write("header-labels.csv", "a,b,label\n1,2,0\n3,4,12\n");
        using var data = CsvDataset.Load(path, new long[] { 2 }, LabelKind.ClassIndex, null, out int headerRows);
        Assert.Equal(3, CsvDataset.FindLabelOutOfRange(data, 10, path, "M", headerRows)!.Line);
    }

    [Fact]
    public void PredictReader_HeaderAndNamedLabel_AreHonoured_ALabelIsOptional()
    {
        string withLabel = Write("predict-labelled.csv", "label,t0,t1\n7,5,6\n3,7,8\n");
        var (x, labels) = ModelDsl.Runtime.Inference.FeatureCsv.Load(withLabel, new long[] { 2 }, new CsvOptions { LabelColumn = "label" });
        using (x)
        {
            Assert.Equal(new[] { 5f, 6f, 7f, 8f }, x.data<float>().ToArray());
            Assert.Equal(new[] { "7", "3" }, labels);
        }

        // The same layout without the label column: features only.
        string without = Write("predict-features.csv", "t0,t1\n5,6\n");
        var (y, none) = ModelDsl.Runtime.Inference.FeatureCsv.Load(without, new long[] { 2 }, new CsvOptions { LabelColumn = "label" });
        using (y)
        {
            Assert.Equal(new[] { 5f, 6f }, y.data<float>().ToArray());
            Assert.Null(none);
        }

        // Detected header, label last; a bad value names its column.
        var (z, last) = ModelDsl.Runtime.Inference.FeatureCsv.Load(Write("predict-detected.csv", "a,b,y\n1,2,1\n"), new long[] { 2 });
        using (z) Assert.Equal(new[] { "1" }, last);
        var e = Assert.Throws<DataFormatException>(() => ModelDsl.Runtime.Inference.FeatureCsv.Load(Write("predict-bad.csv", "a,b\n1,2\n1,zz\n"), new long[] { 2 }));
        Assert.EndsWith(":3: column 2 ('b'): 'zz' is not a number", e.Message);
    }

    // ---------------------------------------------------------------- Batches

    [Fact]
    public void Batches_CoverEveryIndexOncePerEpoch_KeepingTheLastPartialBatch()
    {
        using var data = Indexed(10);
        Assert.Equal(4, data.BatchCount(3));

        var batches = Orders(data, batchSize: 3, shuffle: true, seed: 7, epoch: 0);
        Assert.Equal(new[] { 3, 3, 3, 1 }, batches.Select(b => b.Length));
        Assert.Equal(Enumerable.Range(0, 10).Select(i => (long)i), batches.SelectMany(b => b).Order());
    }

    [Fact]
    public void Batches_DropLast_LeavesOutThePartialBatch()
    {
        using var data = Indexed(10);
        Assert.Equal(3, data.BatchCount(3, dropLast: true));
        var batches = Orders(data, batchSize: 3, shuffle: true, seed: 7, epoch: 0, dropLast: true);
        Assert.Equal(new[] { 3, 3, 3 }, batches.Select(b => b.Length));
        Assert.Equal(9, batches.SelectMany(b => b).Distinct().Count());

        // An exact multiple loses nothing either way; fewer samples than a batch gives no batch at all.
        Assert.Equal(5, data.BatchCount(2, dropLast: true));
        Assert.Equal(0, data.BatchCount(11, dropLast: true));
        Assert.Empty(data.Batches(11, shuffle: false, seed: 0, epoch: 0, dropLast: true));
    }

    [Fact]
    public void Batches_Order_IsReproducibleAndChangesWithTheEpoch()
    {
        using var data = Indexed(50);
        var order = Flat(data, seed: 3, epoch: 1);
        Assert.Equal(order, Flat(data, seed: 3, epoch: 1));
        Assert.NotEqual(order, Flat(data, seed: 3, epoch: 2));
        Assert.NotEqual(order, Flat(data, seed: 4, epoch: 1));

        // Only seed + epoch matters, as in PyTorch's DistributedSampler.
        Assert.Equal(order, Flat(data, seed: 2, epoch: 2));

        // Without shuffling the order is the file order.
        Assert.Equal(Enumerable.Range(0, 50).Select(i => (long)i),
            Orders(data, batchSize: 8, shuffle: false, seed: 3, epoch: 1).SelectMany(b => b));
    }

    [Fact]
    public void Batches_Order_IsLibtorchRandpermSeededWithSeedPlusEpoch()
    {
        const long n = 37, seed = 1234;
        using var data = Indexed(n);
        for (int epoch = 0; epoch < 3; epoch++)
        {
            // Independent of the dataset's code path: a default generator, then manual_seed, as Python code would do.
            using var generator = new torch.Generator();
            generator.manual_seed(seed + epoch);
            using var expected = randperm(n, generator: generator);
            Assert.Equal(expected.data<long>().ToArray(), Flat(data, seed, epoch, batchSize: 5));
        }
    }

    [Fact]
    public void Batches_PairFeaturesWithTheirLabels_AndAreCopies()
    {
        using var data = Indexed(20);
        foreach (var (x, y) in data.Batches(6, shuffle: true, seed: 5, epoch: 0))
        {
            using var scope = NewDisposeScope();
            scope.Attach(x, y);
            Assert.Equal(new long[] { y.shape[0], 2 }, x.shape);
            Assert.True(x.select(1, 0).eq(y.to(ScalarType.Float32) * 10).all().item<bool>());
            Assert.True(x.select(1, 1).eq(-y.to(ScalarType.Float32)).all().item<bool>());
            x.fill_(-99); // the caller may do anything with its batch without touching the dataset
        }
        Assert.Equal(-19f, data.Features.min().item<float>());
        Assert.Equal(190f, data.Features.max().item<float>());
    }

    [Fact]
    public void Batches_SurviveScopesOpenedAndClosedBetweenSteps()
    {
        // The enumerator's own state must not live in a scope the caller closes while the enumeration is running.
        using var data = Indexed(10);
        using var enumerator = data.Batches(3, shuffle: true, seed: 1, epoch: 0).GetEnumerator();
        var seen = new List<long>();
        while (true)
        {
            using var step = NewDisposeScope();
            if (!enumerator.MoveNext())
                break;
            seen.AddRange(enumerator.Current.Y.data<long>().ToArray());
        }
        Assert.Equal(Enumerable.Range(0, 10).Select(i => (long)i), seen.Order());
    }

    [Fact]
    public void Batches_RejectABatchSizeBelowOne_Eagerly()
    {
        using var data = Indexed(4);
        Assert.Throws<ArgumentOutOfRangeException>(() => data.Batches(0, shuffle: false, seed: 0, epoch: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => data.BatchCount(-1));
    }

    // ---------------------------------------------------------------- Split and Subset

    [Fact]
    public void Split_SizesAreRoundedAndTheSetsDisjoint()
    {
        using var data = Indexed(101);
        var (train, valid) = data.Split(0.2, seed: 9);
        using (train)
        using (valid)
        {
            Assert.Equal(81, train.Count); // round(101 * 0.2) = 20 to validation
            Assert.Equal(20, valid.Count);
            var trainIds = train.Labels.data<long>().ToArray();
            var validIds = valid.Labels.data<long>().ToArray();
            Assert.Empty(trainIds.Intersect(validIds));
            Assert.Equal(Enumerable.Range(0, 101).Select(i => (long)i), trainIds.Concat(validIds).Order());
            Assert.True(train.Features.select(1, 0).eq(train.Labels.to(ScalarType.Float32) * 10).all().item<bool>());

            // Train first, then validation, of randperm(N) seeded with the seed (torch.utils.data.random_split).
            using var generator = new torch.Generator();
            generator.manual_seed(9);
            using var perm = randperm(101, generator: generator);
            Assert.Equal(perm.data<long>().ToArray(), trainIds.Concat(validIds));
        }
    }

    [Fact]
    public void Split_IsDeterministicPerSeed()
    {
        using var data = Indexed(40);
        long[] ValidationIds(long seed)
        {
            var (t, v) = data.Split(0.25, seed);
            using (t)
            using (v)
                return v.Labels.data<long>().ToArray();
        }
        Assert.Equal(ValidationIds(1), ValidationIds(1));
        Assert.NotEqual(ValidationIds(1), ValidationIds(2));
    }

    [Fact]
    public void Split_FractionZeroGivesAnEmptyValidationSet_OutOfRangeThrows()
    {
        using var data = Indexed(10);
        var (train, valid) = data.Split(0, seed: 1);
        using (train)
        using (valid)
        {
            Assert.Equal(10, train.Count);
            Assert.Equal(0, valid.Count);
            Assert.Equal(new long[] { 0, 2 }, valid.Features.shape);
            Assert.Empty(valid.Batches(4, shuffle: true, seed: 0, epoch: 0));
        }

        foreach (var bad in new[] { 1.0, -0.1, 1.5, double.NaN })
        {
            var e = Assert.Throws<ArgumentOutOfRangeException>(() => data.Split(bad, seed: 1));
            Assert.Contains("at least 0 and less than 1", e.Message);
        }
        // 0.99 of 10 samples rounds to all 10: nothing would be left to train on.
        Assert.Contains("leaves none for training", Assert.Throws<ArgumentOutOfRangeException>(() => data.Split(0.99, seed: 1)).Message);
    }

    [Fact]
    public void Subset_CopiesARange()
    {
        using var data = Indexed(10);
        using var part = data.Subset(3, 4);
        Assert.Equal(new long[] { 3, 4, 5, 6 }, part.Labels.data<long>().ToArray());
        Assert.Equal(new long[] { 4, 2 }, part.Features.shape);
        Assert.Throws<ArgumentOutOfRangeException>(() => data.Subset(8, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => data.Subset(-1, 2));
    }

    [Fact]
    public void Constructor_RejectsMismatchedCounts()
    {
        using var scope = NewDisposeScope();
        var e = Assert.Throws<ArgumentException>(() => new TensorDataset(zeros(5, 3), zeros(4, dtype: ScalarType.Int64)));
        Assert.Contains("5 samples but labels hold 4", e.Message);
    }

    [Fact]
    public void Dataset_OutlivesTheScopeItWasBuiltIn()
    {
        TensorDataset data;
        using (NewDisposeScope())
            data = Indexed(6);
        using (data)
            Assert.Equal(15, data.Labels.sum().item<long>());
    }

    // ---------------------------------------------------------------- CharCorpus

    [Fact]
    public void CharCorpus_BuildsASortedVocabularyAndShiftedTargets()
    {
        // CRLF endings read the same as LF.
        using var corpus = CharCorpus.Load(Write("tiny.txt", "hello world\r\nhi"));
        Assert.Equal("\n dehilorw", corpus.Vocabulary);
        Assert.Equal(10, corpus.VocabularySize);
        Assert.Equal(14, corpus.Length);
        Assert.Equal("hello world\nhi", corpus.Decode(corpus.Ids.data<long>().ToArray()));
        Assert.Equal(new long[] { 4, 3, 6, 6, 7 }, corpus.Encode("hello"));
        Assert.Throws<ArgumentException>(() => corpus.Encode("hey"));

        // 14 characters, windows of 4: (14 - 1) / 4 = 3 windows, the targets one character on.
        using var windows = corpus.Windows(4);
        Assert.Equal(new long[] { 3, 4 }, windows.Features.shape);
        Assert.Equal(new long[] { 3, 4 }, windows.Labels.shape);
        Assert.Equal(ScalarType.Int64, windows.Features.dtype);
        Assert.Equal(ScalarType.Int64, windows.Labels.dtype);
        string[] inputs = Rows(corpus, windows.Features), targets = Rows(corpus, windows.Labels);
        Assert.Equal(new[] { "hell", "o wo", "rld\n" }, inputs);
        Assert.Equal(new[] { "ello", " wor", "ld\nh" }, targets);

        // The largest window uses every character: Length - 1 inputs and their Length - 1 targets.
        using var whole = corpus.Windows(13);
        Assert.Equal(new[] { "hello world\nh" }, Rows(corpus, whole.Features));
        Assert.Equal(new[] { "ello world\nhi" }, Rows(corpus, whole.Labels));
    }

    [Fact]
    public void CharCorpus_Errors()
    {
        using var corpus = CharCorpus.FromText("abcdef");
        Assert.Throws<ArgumentOutOfRangeException>(() => corpus.Windows(0));
        Assert.Contains("at most 5", Assert.Throws<ArgumentOutOfRangeException>(() => corpus.Windows(6)).Message);

        string empty = Write("empty.txt", "");
        var e = Assert.Throws<DataFormatException>(() => CharCorpus.Load(empty));
        Assert.Equal(empty, e.Path);
        Assert.Contains("empty", e.Message);

        string missing = Path.Combine(_temp, "absent.txt");
        Assert.Contains(missing, Assert.Throws<FileNotFoundException>(() => CharCorpus.Load(missing)).Message);
    }

    // ---------------------------------------------------------------- helpers

    private static string DigitsData
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "ModelDsl.sln")))
                    return Path.Combine(dir.FullName, "samples", "Digits", "data");
            }
            throw new InvalidOperationException($"ModelDsl.sln not found above {AppContext.BaseDirectory}");
        }
    }

    private string Write(string name, string content)
    {
        string path = Path.Combine(_temp, name);
        File.WriteAllText(path, content);
        return path;
    }

    /// <summary>N samples whose label is their index and whose features are [10 i, -i], to check pairing.</summary>
    private static TensorDataset Indexed(long n)
    {
        using var scope = NewDisposeScope();
        var labels = arange(n, dtype: ScalarType.Int64);
        var f = labels.to(ScalarType.Float32);
        return new TensorDataset(stack(new[] { f * 10, -f }, 1), labels);
    }

    /// <summary>The sample indices of each batch of one epoch.</summary>
    private static List<long[]> Orders(TensorDataset data, long batchSize, bool shuffle, long seed, int epoch, bool dropLast = false)
    {
        using var scope = NewDisposeScope();
        return data.Batches(batchSize, shuffle, seed, epoch, dropLast).Select(b => b.Y.data<long>().ToArray()).ToList();
    }

    private static long[] Flat(TensorDataset data, long seed, int epoch, long batchSize = 7) =>
        Orders(data, batchSize, shuffle: true, seed, epoch).SelectMany(b => b).ToArray();

    private static string[] Rows(CharCorpus corpus, Tensor ids) =>
        Enumerable.Range(0, (int)ids.shape[0]).Select(i =>
        {
            using var row = ids[i];
            return corpus.Decode(row.data<long>().ToArray());
        }).ToArray();
}
