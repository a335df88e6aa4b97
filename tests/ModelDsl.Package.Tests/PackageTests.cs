using System.Collections.Generic;
using System.IO;
using System.IO.Compression;
using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace ModelDsl.Package.Tests;

/// <summary>
/// What a user of the package gets: its contents, a console project built against it (with the SDK's recommended
/// analyzers as errors), a run of the declared model, a single-file publish that still loads libtorch, a mistake that
/// fails the build on its line, and the modeldsl-trainer template scaffolded, built and trained.
/// </summary>
public sealed class PackageTests : IClassFixture<PackedFeed>
{
    private readonly PackedFeed _feed;

    public PackageTests(PackedFeed feed) { _feed = feed; }

    [Fact]
    public void Package_HoldsTheLibrariesTheCompilerTheBuildStepsAndTheirMetadata()
    {
        using var package = ZipFile.OpenRead(_feed.PackagePath("ModelDsl"));
        var entries = package.Entries.Select(e => e.FullName).ToHashSet();
        foreach (var expected in new[]
        {
            "lib/net10.0/ModelDsl.dll", "lib/net10.0/ModelDsl.xml", "lib/net10.0/ModelDsl.Runtime.dll", "lib/net10.0/ModelDsl.Runtime.xml",
            "analyzers/dotnet/cs/ModelDsl.Generators.dll", "analyzers/dotnet/cs/ModelDsl.CodeFixes.dll",
            "buildTransitive/ModelDsl.props", "buildTransitive/ModelDsl.targets", "build/LibTorchSharpCompat.cs",
            "README.md", "LICENSE",
        })
            Assert.Contains(expected, entries);
        // The generator is an analyzer only: as a lib/ reference it would drag Roslyn into the user's program.
        Assert.DoesNotContain(entries, e => e.StartsWith("lib/", StringComparison.Ordinal) && e.Contains("Generators", StringComparison.Ordinal));

        XNamespace ns = "http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd";
        XDocument nuspec;
        using (var stream = package.GetEntry("ModelDsl.nuspec")!.Open()) nuspec = XDocument.Load(stream);
        var metadata = nuspec.Root!.Element(ns + "metadata")!;
        Assert.Equal("ModelDsl", metadata.Element(ns + "id")!.Value);
        Assert.Equal(_feed.Version, metadata.Element(ns + "version")!.Value);
        Assert.Equal("MIT", metadata.Element(ns + "license")!.Value);
        Assert.Equal("README.md", metadata.Element(ns + "readme")!.Value);
        Assert.StartsWith("https://", metadata.Element(ns + "repository")!.Attribute("url")!.Value, StringComparison.Ordinal);
        var dependencies = metadata.Descendants(ns + "dependency").Select(d => d.Attribute("id")!.Value).ToList();
        Assert.Contains("TorchSharp", dependencies);
        Assert.Contains("libtorch-cpu-linux-x64", dependencies); // CPU by default
        Assert.DoesNotContain(dependencies, d => d.StartsWith("ModelDsl", StringComparison.Ordinal)); // one package, not three
        Assert.Contains("Google.Protobuf", dependencies);      // ONNX export's runtime
        Assert.DoesNotContain("Grpc.Tools", dependencies);     // protoc is build-time only

        using var symbols = ZipFile.OpenRead(Path.ChangeExtension(_feed.PackagePath("ModelDsl"), ".snupkg"));
        Assert.Contains("lib/net10.0/ModelDsl.Runtime.pdb", symbols.Entries.Select(e => e.FullName));
        Assert.Contains("lib/net10.0/ModelDsl.pdb", symbols.Entries.Select(e => e.FullName));
    }

    [Fact]
    public void TestingPackage_CarriesTheGeneratorItRunsAndDependsOnlyOnRoslyn()
    {
        using var package = ZipFile.OpenRead(_feed.PackagePath("ModelDsl.Testing"));
        var entries = package.Entries.Select(e => e.FullName).ToHashSet();
        Assert.Contains("lib/net10.0/ModelDsl.Testing.dll", entries);
        Assert.Contains("lib/net10.0/ModelDsl.Generators.dll", entries);
        XNamespace ns = "http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd";
        XDocument nuspec;
        using (var stream = package.GetEntry("ModelDsl.Testing.nuspec")!.Open()) nuspec = XDocument.Load(stream);
        var dependencies = nuspec.Descendants(ns + "dependency").Select(d => d.Attribute("id")!.Value).ToList();
        Assert.Equal(new[] { "Microsoft.CodeAnalysis.CSharp" }, dependencies);
    }

    [Fact]
    public void ConsoleProject_BuildsRunsAndPublishesAsOneFile_AndAWrongSizeFailsTheBuildOnItsLine()
    {
        var dir = _feed.NewProjectFolder("Consumer");
        // A user who holds their own code to the SDK's recommended rules, as errors, with XML docs required: the
        // generated code must not add a single warning.
        File.WriteAllText(Path.Combine(dir, "Consumer.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <AnalysisMode>Recommended</AnalysisMode>
                <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
                <GenerateDocumentationFile>true</GenerateDocumentationFile>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="ModelDsl" Version="{_feed.Version}" />
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(dir, "Program.cs"), """
            using System;
            using System.Linq;
            using ModelDsl;
            using TorchSharp;
            using TorchSharp.Modules;

            namespace Consumer
            {
                /// <summary>Runs the model once.</summary>
                public static class Program
                {
                    /// <summary>Entry point.</summary>
                    public static void Main()
                    {
                        using var model = new Classifier();
                        using var y = model.forward(torch.ones(5, 8));
                        Console.WriteLine("output " + string.Join("x", y.shape));
                        Console.WriteLine("parameters " + model.parameters().Sum(p => p.numel()));
                        Console.WriteLine(Classifier.Summary);
                    }
                }

                /// <summary>A small classifier.</summary>
                [Model(Input = "B, 8")]
                public partial class Classifier
                {
                    /// <summary>Hidden layer.</summary>
                    [Linear(16)] public partial Linear Hidden { get; }
                    /// <summary>Activation.</summary>
                    [ReLU] public partial ReLU Act { get; }
                    /// <summary>Output layer.</summary>
                    [Linear(3)] public partial Linear Output { get; }
                }

                /// <summary>With a training and an optimisation plan: the trainer's generated code is held to the same rules.</summary>
                [Model(Input = "B, 4")]
                [Train(Loss.CrossEntropy, Optimizer.AdamW, Epochs = 2, Data = "train.csv")]
                [Prune(PruneMethod.L1Unstructured, 0.5, Targets = new[] { nameof(Hidden) })]
                [Quantize(QuantizeMode.DynamicInt8)]
                public partial class Trained
                {
                    /// <summary>Hidden layer.</summary>
                    [Linear(8)] public partial Linear Hidden { get; }
                    /// <summary>Activation.</summary>
                    [ReLU] public partial ReLU Act { get; }
                    /// <summary>Output layer.</summary>
                    [Linear(3)] public partial Linear Output { get; }
                }
            }
            """);

        var build = Dotnet.Run(dir, "build", "-c", "Release");
        Assert.True(build.ExitCode == 0, "the consumer did not build:\n" + build);

        long parameters = (8 * 16 + 16) + (16 * 3 + 3);
        var run = Dotnet.Run(dir, Path.Combine(dir, "bin", "Release", "net10.0", "Consumer.dll"));
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("output 5x3", run.Output);
        Assert.Contains("parameters " + parameters, run.Output);   // what libtorch holds ...
        Assert.Contains($"Total params: {parameters:N0}", run.Output); // ... is what the compiler computed

        // Single file, native libraries inside the bundle: the bundled libLibTorchSharp.so must be the patched copy,
        // or the extracted one fails to load on Debian 12 / Ubuntu 22.04 (GLIBCXX_3.4.32 not found).
        var publishDir = Path.Combine(dir, "single");
        var publish = Dotnet.Run(dir, "publish", "-c", "Release", "-r", "linux-x64", "--self-contained", "false",
            "-p:PublishSingleFile=true", "-p:IncludeNativeLibrariesForSelfExtract=true", "-o", publishDir);
        Assert.True(publish.ExitCode == 0, "single-file publish failed:\n" + publish);
        Assert.False(File.Exists(Path.Combine(publishDir, "libLibTorchSharp.so")), "the native library should be inside the bundle");
        var single = Dotnet.RunProgram(Path.Combine(publishDir, "Consumer"), dir, Array.Empty<string>(),
            new Dictionary<string, string> { ["DOTNET_BUNDLE_EXTRACT_BASE_DIR"] = Path.Combine(dir, "extract") });
        Assert.True(single.ExitCode == 0, "the single-file program failed:\n" + single);
        Assert.Contains("output 5x3", single.Output);
        Directory.Delete(publishDir, recursive: true); // half a gigabyte
        Directory.Delete(Path.Combine(dir, "extract"), recursive: true);

        // CUDA is opt-in by a property and a libtorch-cuda package; the property alone is a clear build error, not a
        // program that fails to find CUDA at run time. (The registry here serves no CUDA libtorch to test the rest.)
        var cuda = Dotnet.Run(dir, "build", "-c", "Release", "-p:ModelDslCuda=true");
        Assert.NotEqual(0, cuda.ExitCode);
        Assert.Contains("error MDBUILD01: ModelDslCuda is true, but no libtorch-cuda-* package is referenced", cuda.Output);

        // A mistake: the explicit in-features disagree with the 16 the layer before produces.
        string broken = """
            using ModelDsl;
            using TorchSharp.Modules;

            namespace Consumer
            {
                /// <summary>A model with a wrong size.</summary>
                [Model(Input = "B, 8")]
                public partial class Broken
                {
                    /// <summary>Hidden layer.</summary>
                    [Linear(16)] public partial Linear Hidden { get; }
                    /// <summary>Output layer.</summary>
                    [Linear(32, 3)] public partial Linear Output { get; }
                }
            }
            """;
        File.WriteAllText(Path.Combine(dir, "Broken.cs"), broken);
        var lines = broken.Split('\n');
        int line = Array.FindIndex(lines, l => l.Contains("[Linear(32, 3)]", StringComparison.Ordinal)) + 1;
        int column = lines[line - 1].IndexOf("32", StringComparison.Ordinal) + 1;

        var failed = Dotnet.Run(dir, "build", "-c", "Release");
        Assert.NotEqual(0, failed.ExitCode);
        var errors = Regex.Matches(failed.Output, @"Broken\.cs\((\d+),(\d+)\): error (\w+): (.*?) \[").Select(m => m.Groups).ToList();
        Assert.True(errors.Count > 0, "no error on Broken.cs:\n" + failed);
        Assert.All(errors, e => Assert.Equal(("MD0101", line, column), (e[3].Value, int.Parse(e[1].Value), int.Parse(e[2].Value))));
        Assert.Contains("Linear declares in-features = 32, but its input has 16", errors[0][4].Value);
        Assert.Contains("/diagnostics.md#md0101)", errors[0][4].Value); // the help link, as a build log shows it
        // Only the ModelDsl error: nothing else in the user's build breaks because of it.
        Assert.DoesNotMatch(@"error (?!MD0101)\w+:", failed.Output);
    }

    [Fact]
    public void TrainerTemplate_ScaffoldsAProjectThatBuildsAndTrainsTwoEpochs()
    {
        var hive = Path.Combine(_feed.Root, "template-hive"); // never the user's own template list
        var install = Dotnet.Run(_feed.Root, "new", "install", _feed.PackagePath("ModelDsl.Templates"), "--debug:custom-hive", hive);
        Assert.True(install.ExitCode == 0, install.ToString());
        Assert.Contains("modeldsl-trainer", install.Output);

        var parent = _feed.NewProjectFolder("FromTemplate");
        var scaffold = Dotnet.Run(parent, "new", "modeldsl-trainer", "-n", "Irises", "--ModelDslVersion", _feed.Version, "--debug:custom-hive", hive);
        Assert.True(scaffold.ExitCode == 0, scaffold.ToString());
        var dir = Path.Combine(parent, "Irises");
        Assert.True(File.Exists(Path.Combine(dir, "Irises.csproj")), "no Irises.csproj:\n" + scaffold);
        Assert.Contains($"Version=\"{_feed.Version}\"", File.ReadAllText(Path.Combine(dir, "Irises.csproj")));
        Assert.Contains("namespace Irises;", File.ReadAllText(Path.Combine(dir, "Classifier.cs")));

        var build = Dotnet.Run(dir, "build", "-c", "Release");
        Assert.True(build.ExitCode == 0, "the scaffolded project did not build:\n" + build);

        var output = Path.Combine(dir, "bin", "Release", "net10.0");
        var train = Dotnet.Run(output, Path.Combine(output, "Irises.dll"), "--epochs", "2", "--plain");
        Assert.True(train.ExitCode == 0, train.ToString());
        Assert.Contains("epoch 1/2", train.Output);
        Assert.Contains("epoch 2/2", train.Output);
        Assert.DoesNotContain("epoch 3/", train.Output);
        var accuracy = Regex.Match(train.Output, @"test accuracy ([\d.]+)% on 60 samples");
        Assert.True(accuracy.Success, train.ToString());
        // Three well-separated clusters: two epochs are far above chance (33%).
        Assert.True(double.Parse(accuracy.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) > 60, train.ToString());
        Assert.True(File.Exists(Path.Combine(output, "checkpoints", "Classifier", "checkpoint.ckpt")));
    }

    /// <summary>`dotnet new modeldsl-trainer` without --ModelDslVersion must reference the package it ships with.</summary>
    [Fact]
    public void TrainerTemplate_DefaultsToThisVersionOfThePackage()
    {
        var root = Dotnet.RepoRoot();
        var version = XDocument.Load(Path.Combine(root, "Directory.Build.props")).Descendants("Version").Single().Value;
        var template = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(root, "src", "Templates", "content", "modeldsl-trainer", ".template.config", "template.json")));
        Assert.Equal(version, template.RootElement.GetProperty("symbols").GetProperty("ModelDslVersion").GetProperty("defaultValue").GetString());
    }
}
