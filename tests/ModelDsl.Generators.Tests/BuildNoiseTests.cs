using Microsoft.CodeAnalysis;

namespace ModelDsl.Generators.Tests;

/// <summary>
/// A build with a ModelDsl mistake shows the MD diagnostic that explains it, and nothing else: the user's source is
/// compiled together with everything the generator emitted for it (the error skeleton), and every other warning or
/// error is noise.
/// </summary>
public class BuildNoiseTests
{
    // Code that uses the model the usual ways; it must keep compiling while the model has errors.
    private const string Usage = """
        public static class Use
        {
            public static object Touch() => (new M().forward(null!), M.Summary);
        }

        """;

    public static IEnumerable<object[]> ModelsWithOneMistake() => new[]
    {
        // Shape errors: the skeleton's layer fields are never assigned (was one CS0649 per layer).
        """
        [Model(Input = "B, 64")]
        public partial class M
        {
            [Linear(32)]             public partial Linear Hidden { get; }
            [ReLU]                   public partial ReLU Act { get; }
            [Linear({|MD0101:16|}, 10)] public partial Linear Output { get; }
        }
        """,
        """
        [Model(Input = "B, 64")]
        public partial class M
        {
            [{|MD0102:Conv2d(8, 3)|}] public partial Conv2d Conv { get; }
            [ReLU]          public partial ReLU Act { get; }
        }
        """,
        """
        [Model({|MD0100:Input = "B, 0"|})]
        public partial class M { [Linear(2)] public partial Linear L { get; } [ReLU] public partial ReLU R { get; } }
        """,
        // Members rejected as layers: nothing implemented them (was CS9248 each).
        """
        [Model(Input = "B, 4")]
        public partial class M
        {
            [Linear(2)] public partial Linear {|MD0005:A|} { get; set; }
            [ReLU]      public partial ReLU R { get; }
        }
        """,
        """
        [Model(Input = "B, 4")]
        public partial class M
        {
            [Linear(2)] public static partial Linear {|MD0005:A|} { get; }
            [ReLU]      public partial ReLU R { get; }
        }
        """,
        """
        [Model(Input = "B, 4")]
        public partial class M
        {
            [Linear(2)] public partial {|MD0006:Conv2d|} A { get; }
            [ReLU]      public partial ReLU R { get; }
        }
        """,
        """
        [Model(Input = "B, 4")]
        public partial class M
        {
            [Linear(2), ReLU] public partial Linear {|MD0007:A|} { get; }
            [ReLU]            public partial ReLU R { get; }
        }
        """,
        """
        [Model(Input = "B, 4")]
        public partial class M
        {
            [Linear(2)] public partial Linear A { get; }
            public partial Linear {|MD0009:Forgotten|} { get; }
        }
        """,
        """
        [Model(Input = "B, 4")]
        public partial class M
        {
            [Linear(4)] public partial Linear A { get; }
            public partial N {|MD0010:Inner|} { get; }
        }

        [Model(Input = "B, 4")]
        public partial class N
        {
            public partial M {|MD0010:Outer|} { get; }
        }
        """,
        """
        [Model(Input = "B, 64")]
        public partial class M
        {
            [Linear(64, 10)] public partial Linear A { get; }
            [Linear(32, 10)] public partial Linear B { get; }
            public TorchSharp.torch.Tensor {|MD0015:forward|}(TorchSharp.torch.Tensor x, TorchSharp.torch.Tensor y) => A.forward(x) + B.forward(y);
        }
        """,
        // Not partial: the skeleton implements the partial properties, which leaves CS0260 (asserted below) instead
        // of CS0751 and CS9248 for every layer.
        """
        [Model(Input = "B, 64")]
        public class {|MD0002:M|}
        {
            [Linear(32)] public partial Linear Hidden { get; }
            [ReLU]       public partial ReLU Act { get; }
            [Linear(10)] public partial Linear Output { get; }
        }
        """,
        """
        [Model(Input = "B, 64")]
        [Train(Loss.CrossEntropy, Optimizer.Adam)]
        public class {|MD0002:M|}
        {
            [Linear(10)] public partial Linear Output { get; }
        }
        public static class Program { public static int Main(string[] args) => M.Run(args); }
        """,
        // Another base class: no Module<Tensor, Tensor> skeleton (it would clash, CS0263), the layers still implemented.
        """
        public class Base { }
        [Model(Input = "B, 4")]
        [Train(Loss.MSE, Optimizer.Adam)]
        public partial class {|MD0012:M|} : Base { [Linear(2)] public partial Linear L { get; } [ReLU] public partial ReLU R { get; } }
        public static class Program { public static int Main(string[] args) => M.Run(args); }
        """,
        // Training plan errors.
        """
        [Model(Input = "B, 1, 8, 8")]
        [Train({|MD0404:Loss.CrossEntropy|}, Optimizer.Adam)]
        public partial class M
        {
            [Conv2d(3, 3, Padding = 1)] public partial Conv2d Conv { get; }
            [MaxPool2d(2)]              public partial MaxPool2d Pool { get; }
        }
        public static class Program { public static int Main(string[] args) => M.Run(args); }
        """,
    }.Select(s => new object[] { s });

    [Theory]
    [MemberData(nameof(ModelsWithOneMistake))]
    public void ModelWithAnMDError_BuildsWithTheMDDiagnosticAlone(string markup)
    {
        // With another base class M is no Module, so only the code that does not need one can compile.
        var run = Markup.Verify((markup.Contains("MD0012", StringComparison.Ordinal) ? "" : Usage) + markup);
        var noise = run.CompilerDiagnostics.Where(d => !IsTheOneUnavoidable(run, d)).ToArray();
        Assert.True(noise.Length == 0, "Besides the MD diagnostics:\n" + string.Join("\n", noise.Select(d => d.ToString())));
    }

    [Theory]
    [InlineData("")]
    [InlineData("namespace Zoo { public partial class Outer { ")]
    public void TrainWithoutModel_BuildsWithMD0410Alone(string opening)
    {
        // Nothing implemented the partial layer properties (CS9248 each) or Run (CS0117) before the stubs.
        string closing = opening.Length == 0 ? "" : " } }";
        string type = opening.Length == 0 ? "Mlp" : "Zoo.Outer.Mlp";
        var run = Markup.Verify(opening + """
            [{|MD0410:Train(Loss.CrossEntropy, Optimizer.Adam)|}]
            public partial class Mlp
            {
                [Linear(32)] public partial Linear Hidden { get; }
                [Linear(10)] internal partial Linear Output { get; }
            }
            """ + closing + $"\npublic static class Program {{ public static int Main(string[] args) => {type}.Run(args); }}");
        Assert.True(run.CompilerDiagnostics.Count == 0, "Besides MD0410:\n" + string.Join("\n", run.CompilerDiagnostics.Select(d => d.ToString())));
    }

    /// <summary>
    /// Partial properties in a class that is not partial are invalid C# whatever is generated: the compiler reports
    /// that once, as CS0260 on the class name, exactly where MD0002 says the same and how to fix it.
    /// </summary>
    private static bool IsTheOneUnavoidable(GeneratorRun run, Diagnostic d) =>
        d.Id == "CS0260" &&
        run.ModelDiagnostics.Any(md => md.Id == "MD0002" && md.Location.SourceSpan == d.Location.SourceSpan) &&
        run.CompilerDiagnostics.Count(x => x.Id == "CS0260") == 1;
}
