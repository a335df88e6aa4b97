using System.Diagnostics;
using System.Globalization;
using ModelDsl.Runtime.Pruning;
using ModelDsl.Runtime.Quantization;
using ModelDsl.Runtime.Training;
using ModelDsl.Shapes;

namespace ModelDsl.Runtime.Optimization
{
    /// <summary>What the trainer lends the pipeline: the trained model and the few trainer services the passes need.</summary>
    internal sealed record OptimizationContext(
        nn.Module<Tensor, Tensor> Model,
        TrainingPlan Plan,
        Device Device,
        bool Primary,
        string ExportPath,
        Action<string> Note,
        Action<nn.Module<Tensor, Tensor>, int, double> FineTune,
        Func<nn.Module<Tensor, Tensor>, (double? TestAccuracy, double? ValLoss)> Evaluate,
        Func<int, IEnumerable<Tensor>> Calibration);

    /// <summary>
    /// Runs a model's declared optimisation passes after training, in declaration order — the trainer's seam for
    /// pruning and quantisation — and measures what they gained. Pruning passes compose as PyTorch's
    /// PruningContainer (a later pass prunes among the survivors); the masks are made permanent
    /// (<see cref="Prune.Remove"/>) before quantisation or at the end. Fine-tuning trains the masked model at a tenth
    /// of the declared learning rate.
    /// </summary>
    internal static class OptimizationPipeline
    {
        /// <summary>Fine-tuning after pruning runs at this fraction of the declared learning rate.</summary>
        public const double FineTuneLearningRateFactor = 0.1;

        /// <summary>Runs the passes on the context's model, in place, and reports what they gained.</summary>
        public static OptimizationReport Run(OptimizationContext context)
        {
            try
            {
                return RunPasses(context);
            }
            catch (LayerReplacedException e)
            {
                // The compiler reports this for the model's own forward (MD0016); this is the rest: a composed model's
                // hand-written forward, or a helper it calls, reading a replaced layer through its typed property.
                throw new TrainingException($"{context.Plan.ModelName}: the optimisation plan replaced a layer that a hand-written forward reads through its typed property: {e.Message}", TrainingHost.UsageError, e);
            }
        }

        private static OptimizationReport RunPasses(OptimizationContext context)
        {
            var plan = context.Plan;
            var model = context.Model;
            var host = model as ILayerHost
                ?? throw new TrainingException($"{plan.ModelName}: the optimisation plan needs a generated [Model] class (layers by name)");
            var report = new OptimizationReport
            {
                Passes = plan.Passes.Select(p => p.ToString()!).ToList(),
                ParamCountBefore = TrainingReport.ParameterCount(model),
                ParamCountAfterCompileTime = plan.ParametersAfterPasses,
                ParamBytesBefore = StateBytes(model),
            };
            // The passes cut and fold plain BatchNorms: a --sync-batchnorm run's layers go back to them (fine-tuning
            // then keeps per-rank statistics).
            foreach (var name in host.LayerNames)
            {
                if (host.GetLayer(name) is Distributed.SyncBatchNorm synced)
                    host.ReplaceLayer(name, synced.ToBatchNorm());
            }
            report.TestAccuracyBefore = context.Evaluate(model).TestAccuracy;
            if (context.Primary)
            {
                report.FileBytesBefore = SavedBytes(model);
                (report.LatencyBatch1Before, report.LatencyBatch64Before) = Latencies(model, plan, context.Device);
                if (plan.IsLanguageModel) report.GenerationTokensPerSecondBefore = GenerationSpeed(model, plan);
            }

            // The passes change the trained model in place (its checkpoint on disk keeps the float weights).
            var pruned = new List<(nn.Module Module, string Layer)>();
            foreach (var pass in plan.Passes)
            {
                context.Note($"optimisation: {pass}");
                // A pass that changes the compute is timed right before and right after it (before any fine-tuning: the
                // time does not depend on the weights' values), so the two measurements see the same machine load.
                // Earlier masks become part of the weights first: a cut ranks and copies the final weights, quantisation
                // takes them.
                if (ChangesCompute(pass)) MakePermanent(pruned, report);
                var before = context.Primary && ChangesCompute(pass) ? Latencies(model, plan, context.Device, fastest: true) : default;
                switch (pass)
                {
                    case PrunePass { Method: PruneMethod.Structured } structured:
                        // A target coupled to an earlier one of the pass was cut with its group; a target inside a block
                        // is cut in that block (each copy of a repeated block by its own weights).
                        var cut = new HashSet<string>(StringComparer.Ordinal);
                        foreach (var (scope, prefix, name) in structured.Targets.SelectMany(t => Resolve(host, t)))
                            if (!cut.Contains(prefix + name)) cut.UnionWith(Shrink(scope, name, structured, prefix));
                        break;
                    case PrunePass prune:
                        var targets = prune.Targets.SelectMany(t => Resolve(host, t)).Select(r => ((nn.Module)r.Host.GetLayer(r.Name), r.Prefix + r.Name)).ToArray();
                        ApplyPrune(prune, targets);
                        pruned.AddRange(targets.Where(t => !pruned.Contains(t)));
                        break;
                    case QuantizePass { Mode: QuantizeMode.StaticInt8 } quantize:
                        // Fused BatchNorms first (PyTorch's fuse_modules), then observers, calibration, convert.
                        report.FoldedBatchNorms.AddRange(StaticQuantizer.Run(model, context.Calibration(quantize.CalibrationBatches)).Folded);
                        break;
                    case QuantizePass quantize:
                        QuantizeLayers(host, quantize.Mode);
                        break;
                }
                if (context.Primary && ChangesCompute(pass)) MeasurePass(model, plan, context, pass, before, report);
                if (pass is PrunePass { FineTuneEpochs: > 0 } tuned)
                {
                    context.FineTune(model, tuned.FineTuneEpochs, plan.LearningRate * FineTuneLearningRateFactor);
                    report.FineTuneEpochs += tuned.FineTuneEpochs;
                }
            }
            MakePermanent(pruned, report);

            report.ParamCountAfter = model.parameters().Sum(p => p.numel())
                + Quantize.QuantizedLayers(model).Sum(q => q.Layer.named_buffers().Where(b => b.name is "weight" or "bias").Sum(b => b.buffer.numel()))
                + Quantize.StaticLayers(model).Sum(q => q.Layer.weight.numel() + (q.Layer.bias?.numel() ?? 0));
            report.ParamBytesAfter = StateBytes(model);
            report.Sparsity = Sparsity(model);

            // Inference needs no BatchNorm of its own: each one right after a Conv2d (Linear) is folded into it, exactly
            // up to float rounding (the counts above are the plan's, which the compiler computed, before the fold).
            model.eval();
            report.FoldedBatchNorms.AddRange(FoldBatchNorms(host, ""));
            var (accuracy, valLoss) = context.Evaluate(model);
            report.TestAccuracy = accuracy;
            report.ValLoss = valLoss;
            if (context.Primary)
            {
                Export(model, context.ExportPath);
                report.ExportPath = context.ExportPath;
                report.FileBytesAfter = new FileInfo(context.ExportPath).Length;
                report.SizeRatio = report.FileBytesBefore > 0 ? (double)report.FileBytesAfter / report.FileBytesBefore : double.NaN;
                (report.LatencyBatch1After, report.LatencyBatch64After) = Latencies(model, plan, context.Device);
                report.Speedup = report.LatencyBatch64Before / Math.Max(report.LatencyBatch64After, 1e-9);
                report.SpeedupBatch1 = report.LatencyBatch1Before / Math.Max(report.LatencyBatch1After, 1e-9);
                if (plan.IsLanguageModel) report.GenerationTokensPerSecondAfter = GenerationSpeed(model, plan);
            }
            return report;
        }

        /// <summary>A pass is measured (and warned about) when it changes what the dense kernels compute: a structured cut or quantisation. Unstructured masks leave every shape as it was.</summary>
        private static bool ChangesCompute(OptimizationPass pass) => pass is QuantizePass or PrunePass { Method: PruneMethod.Structured };

        /// <summary>
        /// A pass slows the model down when the latency after it exceeds the latency before it by more than this factor
        /// at batch 1 or 64 (the margin keeps the measurement's noise from warning).
        /// </summary>
        public const double SlowerMargin = 1.1;

        /// <summary>
        /// The latency after <paramref name="pass"/> against the latency measured right before it, in the report; one
        /// warning line when the pass made the model slower.
        /// </summary>
        private static void MeasurePass(nn.Module<Tensor, Tensor> model, TrainingPlan plan, OptimizationContext context, OptimizationPass pass,
            (double Batch1, double Batch64) before, OptimizationReport report)
        {
            var (before1, before64) = before;
            var (after1, after64) = Latencies(model, plan, context.Device, fastest: true);
            var measured = new PassLatency
            {
                Pass = pass.ToString()!,
                LatencyBatch1 = after1,
                LatencyBatch64 = after64,
                SpeedupBatch1 = before1 / Math.Max(after1, 1e-9),
                SpeedupBatch64 = before64 / Math.Max(after64, 1e-9),
            };
            report.PassLatencies.Add(measured);
            if (SlowdownWarning(pass, before1, after1, before64, after64) is { } warning)
            {
                report.Warnings.Add(warning);
                context.Note($"optimisation: warning: {warning}");
            }
        }

        /// <summary>The warning for a pass whose latency after exceeds the latency before by more than <see cref="SlowerMargin"/> at batch 1 or 64; null otherwise.</summary>
        internal static string? SlowdownWarning(OptimizationPass pass, double before1, double after1, double before64, double after64) =>
            after1 > before1 * SlowerMargin || after64 > before64 * SlowerMargin
                ? string.Create(CultureInfo.InvariantCulture,
                    $"the pass '{pass}' made the model slower: {before1 / Math.Max(after1, 1e-9):0.00}x at batch 1 ({before1:0.###} -> {after1:0.###} ms), " +
                    $"{before64 / Math.Max(after64, 1e-9):0.00}x at batch 64 ({before64:0.###} -> {after64:0.###} ms)")
                : null;

        /// <summary>
        /// Folds each BatchNorm2d that reads a Conv2d (BatchNorm1d a Linear) of a generated forward into that layer
        /// (<see cref="Fusion"/>), where nothing else reads the Conv2d or Linear — in a graph model another reader
        /// would get the normalised output instead of the raw one; the BatchNorm's slot then holds a
        /// <see cref="FoldedBatchNorm"/>. The model must be in eval mode. Returns the folded BatchNorms' paths.
        /// </summary>
        internal static List<string> FoldBatchNorms(ILayerHost host, string prefix)
        {
            var folded = new List<string>();
            foreach (var name in host.LayerNames)
                if (host.GetLayer(name) is ILayerHost inner) folded.AddRange(FoldBatchNorms(inner, prefix + name + "."));
            // Only a generated forward runs each layer on the sources its summary names.
            if (!host.ForwardIsGenerated) return folded;
            var layers = host.Summary.Layers;
            foreach (var norm in layers)
            {
                // A source that is no layer is a model input (one of several by its name): nothing to fold into.
                if (norm.Sources.Count != 1 || host.Summary[norm.Sources[0]] is null) continue;
                string source = norm.Sources[0];
                if (layers.Any(l => l != norm && l.Sources.Contains(source)) || host.Summary.OutputLayer == source) continue;
                nn.Module<Tensor, Tensor>? fused = (host.GetLayer(source), host.GetLayer(norm.Name)) switch
                {
                    (TorchSharp.Modules.Conv2d conv, TorchSharp.Modules.BatchNorm2d { running_mean: not null } bn) => Fusion.FuseConvBnEval(conv, bn),
                    (TorchSharp.Modules.Linear linear, TorchSharp.Modules.BatchNorm1d { running_mean: not null } bn) => Fusion.FuseLinearBnEval(linear, bn),
                    _ => null,
                };
                if (fused is null) continue;
                // As for a structured cut, the replaced modules are left to the GC: the trainer may still hold their parameters.
                host.ReplaceLayer(source, fused);
                host.ReplaceLayer(norm.Name, new FoldedBatchNorm());
                folded.Add(prefix + norm.Name);
            }
            return folded;
        }

        private static void ApplyPrune(PrunePass pass, (nn.Module Module, string Layer)[] targets)
        {
            if (pass.Method is PruneMethod.GlobalL1Unstructured)
            {
                Prune.GlobalUnstructured(targets.Select(t => (t.Module, "weight")), PruneMethod.L1Unstructured, pass.Amount);
                return;
            }
            foreach (var (module, _) in targets)
            {
                switch (pass.Method)
                {
                    case PruneMethod.L1Unstructured: Prune.L1Unstructured(module, "weight", pass.Amount); break;
                    case PruneMethod.RandomUnstructured: Prune.RandomUnstructured(module, "weight", pass.Amount); break;
                    case PruneMethod.LnStructured: Prune.LnStructured(module, "weight", pass.Amount, pass.N, pass.Dim); break;
                    case PruneMethod.RandomStructured: Prune.RandomStructured(module, "weight", pass.Amount, pass.Dim); break;
                    default: throw new ArgumentOutOfRangeException(nameof(pass), pass.Method, "not an unstructured or Ln/random structured method");
                }
            }
        }

        /// <summary>
        /// Swaps each Linear layer and each [LSTM]/[GRU] layer (in composed models too) for its quantised form through the layer path, in place:
        /// the model may have been shrunk by structured pruning, so it cannot be rebuilt from its class.
        /// </summary>
        private static void QuantizeLayers(ILayerHost host, QuantizeMode mode)
        {
            foreach (var name in host.LayerNames)
            {
                switch (host.GetLayer(name))
                {
                    case TorchSharp.Modules.Linear linear:
                        host.ReplaceLayer(name, Quantize.Dynamic(linear, mode));
                        break;
                    case RecurrentLayer { IsQuantized: false } recurrent:
                        host.ReplaceLayer(name, recurrent.Quantized(mode));
                        break;
                    case ILayerHost inner:
                        QuantizeLayers(inner, mode);
                        break;
                }
            }
            ((nn.Module)host).eval();
        }

        /// <summary>
        /// <see cref="PruneMethod.Structured"/>: removes the least important output channels of the target's dependency
        /// group (<see cref="Group"/>, the compiler's search, so the layers cut here are the ones it allowed) — the same
        /// indices from every producer, the BatchNorm2d layers over them, and the inputs of every layer that reads them
        /// (shifted by a Concat's earlier sources). A channel's importance is the sum over the producers of its L-n norm
        /// (<see cref="Prune.ChannelsToKeep(IReadOnlyList{Tensor}, PruneAmount, double)"/>). <paramref name="host"/> is
        /// the model or the block (at <paramref name="prefix"/>, <c>"Stage1.0."</c>) that holds the target. Returns the
        /// producers cut, by path.
        /// </summary>
        internal static IReadOnlyList<string> Shrink(ILayerHost host, string target, PrunePass pass, string prefix = "")
        {
            var group = Group(host, target);
            if (group.Blocked != GroupBlock.None || group.Consumers.Count == 0)
                throw new TrainingException($"structured pruning of '{prefix}{target}': {group.Reason ?? "no layer consumes its outputs"}");

            var weights = group.Producers.Select(p => ((nn.Module)host.GetLayer(p)).named_parameters().First(w => w.name == "weight").parameter).ToList();
            long[] keep = Prune.ChannelsToKeep(weights, pass.Amount, pass.N);
            long channels = group.Channels;
            // The replaced modules are left to the GC: the trainer may still hold their parameters.
            foreach (var producer in group.Producers) host.ReplaceLayer(producer, Prune.KeepOutputs(host.GetLayer(producer), keep));
            foreach (var norm in group.Norms)
            {
                var module = (TorchSharp.Modules.BatchNorm2d)host.GetLayer(norm.Layer);
                host.ReplaceLayer(norm.Layer, Prune.KeepChannels(module, Around(keep, norm.Offset, channels, module.num_features, 1)));
            }
            foreach (var consumer in group.Consumers)
            {
                var module = host.GetLayer(consumer.Layer);
                long inputs = module switch
                {
                    TorchSharp.Modules.Conv2d conv => conv.in_channels,
                    TorchSharp.Modules.Linear linear => linear.in_features,
                    _ => throw new TrainingException($"structured pruning of '{prefix}{target}': '{prefix}{consumer.Layer}' is a {module.GetType().Name}, which it cannot rewrite"),
                };
                host.ReplaceLayer(consumer.Layer, Prune.KeepInputs(module, Around(keep, consumer.Offset, channels, inputs / consumer.Spatial, consumer.Spatial)));
            }
            return group.Producers.Select(p => prefix + p).ToList();
        }

        /// <summary>
        /// The layers a pass target names (<see cref="LayerPath"/>: <c>"Stem"</c>, <c>"Stage1.0.Conv1"</c>,
        /// <c>"Stage1.*.Conv1"</c>), each with the model or block that holds it and its path prefix. The compiler resolved
        /// the same path (MD0302 when it names nothing); a model whose layers differ is a usage error.
        /// </summary>
        internal static IReadOnlyList<(ILayerHost Host, string Prefix, string Name)> Resolve(ILayerHost host, string target) =>
            LayerPath.Resolve(host, target, h => h.LayerNames, (h, name) => h.GetLayer(name) as ILayerHost, out string error)
            ?? throw new TrainingException($"the optimisation plan's target '{target}' {error}", TrainingHost.UsageError);

        /// <summary>
        /// The indices a layer keeps along an axis of <paramref name="total"/> channels where the group's
        /// <paramref name="channels"/> start at <paramref name="offset"/>: every channel outside the group, and the
        /// group's kept ones; each channel is a run of <paramref name="spatial"/> indices (a flattened (C, H, W)).
        /// </summary>
        private static long[] Around(long[] keep, long offset, long channels, long total, long spatial)
        {
            var kept = Enumerable.Range(0, (int)offset).Select(c => (long)c)
                .Concat(keep.Select(c => offset + c))
                .Concat(Enumerable.Range((int)(offset + channels), (int)(total - offset - channels)).Select(c => (long)c));
            return kept.SelectMany(c => Enumerable.Range(0, (int)spatial).Select(j => c * spatial + j)).ToArray();
        }

        /// <summary>
        /// The dependency group of <paramref name="target"/>'s output channels in the model as it is now
        /// (<see cref="StructuredCut.Group"/> over the summary's graph and the modules' current sizes): the search the
        /// compiler checked the cut with (MD0027–MD0030, MD0305).
        /// </summary>
        internal static ChannelGroup Group(ILayerHost host, string target)
        {
            var summary = host.Summary;
            var nodes = summary.Layers.Select(l => host.GetLayer(l.Name) switch
            {
                TorchSharp.Modules.Conv2d conv => new CutNode(l.Name, LayerKind.Conv2d, l.Sources, conv.out_channels, conv.in_channels, conv.groups),
                TorchSharp.Modules.Linear linear => new CutNode(l.Name, LayerKind.Linear, l.Sources, linear.out_features, linear.in_features),
                TorchSharp.Modules.Flatten flatten => new CutNode(l.Name, LayerKind.Flatten, l.Sources, FlattensChannels: flatten.start_dim == 1 && flatten.end_dim == -1),
                Layers.Concat concat => new CutNode(l.Name, LayerKind.Concat, l.Sources, ConcatDim: concat.Dim, Rank: ShapeText.Rank(l.OutputShape)),
                var module => new CutNode(l.Name, LayerKind.ForModule(module.GetType().FullName), l.Sources, Rank: ShapeText.Rank(l.OutputShape)),
            }).ToList();
            var sample = ShapeText.TryParse(summary.Input, out var dims, out _)
                ? dims.Skip(1).Select(d => d.IsConcrete ? d.Size : -1).ToArray()
                : Array.Empty<long>();
            return StructuredCut.Group(nodes, target, sample, summary.OutputLayer);
        }

        /// <summary>prune.remove on every pruned target (zeros become part of the weight) and each layer's sparsity.</summary>
        private static void MakePermanent(List<(nn.Module Module, string Layer)> pruned, OptimizationReport report)
        {
            foreach (var (module, layer) in pruned)
            {
                if (Prune.PrunedParameters(module).Contains("weight")) Prune.Remove(module, "weight");
                using var scope = torch.NewDisposeScope();
                var weight = module.named_parameters().First(p => p.name == "weight").parameter;
                report.LayerSparsity[layer] = weight.eq(0).sum().item<long>() / (double)Math.Max(1, weight.numel());
            }
            pruned.Clear();
        }

        private static double Sparsity(nn.Module model)
        {
            using var scope = torch.NewDisposeScope();
            long zeros = 0, total = 0;
            foreach (var p in model.parameters())
            {
                zeros += p.eq(0).sum().item<long>();
                total += p.numel();
            }
            return total == 0 ? 0 : (double)zeros / total;
        }

        private static long StateBytes(nn.Module model) =>
            model.state_dict().Values.Sum(t => t.numel() * t.ElementSize);

        private static long SavedBytes(nn.Module model)
        {
            var path = Path.Combine(Path.GetTempPath(), $"modeldsl-size-{Environment.ProcessId}-{Guid.NewGuid():N}.bin");
            try
            {
                model.save(path);
                return new FileInfo(path).Length;
            }
            finally
            {
                File.Delete(path);
            }
        }

        private static void Export(nn.Module<Tensor, Tensor> model, string path)
        {
            var directory = Path.GetDirectoryName(Path.GetFullPath(path));
            if (!string.IsNullOrEmpty(directory)) Directory.CreateDirectory(directory);
            model.save(path);
        }

        /// <summary>Tokens per second of sampling one sequence (what <c>generate</c> does), with the training window as context.</summary>
        private static double GenerationSpeed(nn.Module<Tensor, Tensor> model, TrainingPlan plan) =>
            Inference.TextGeneration.TokensPerSecond(model, (int)plan.SampleShape[0]);

        /// <summary>
        /// Median wall-clock milliseconds of one forward at batch 1 (50 runs) and at batch 64 (20 runs), in eval mode under
        /// no-grad; with <paramref name="fastest"/>, the fastest run instead (a pass's before/after: load only adds time).
        /// </summary>
        private static (double Batch1, double Batch64) Latencies(nn.Module<Tensor, Tensor> model, TrainingPlan plan, Device device, bool fastest = false)
        {
            model.eval();
            using var noGrad = torch.no_grad();
            return (Milliseconds(model, Input(plan, 1, device), 50, fastest), Milliseconds(model, Input(plan, 64, device), 20, fastest));
        }

        private static Tensor Input(TrainingPlan plan, long batch, Device device)
        {
            var shape = new[] { batch }.Concat(plan.SampleShape).ToArray();
            var generator = new torch.Generator(0);
            // Token ids 0 and 1 exist in every vocabulary; their values do not change the time.
            return plan.InputIsInteger
                ? torch.randint(0, 2, shape, dtype: ScalarType.Int64, device: device, generator: generator)
                : torch.rand(shape, device: device, generator: generator);
        }

        private static double Milliseconds(nn.Module<Tensor, Tensor> model, Tensor x, int runs, bool fastest)
        {
            using (x)
            {
                for (int i = 0; i < 3; i++) using (torch.NewDisposeScope()) model.call(x);
                var times = new double[runs];
                for (int i = 0; i < runs; i++)
                {
                    using var scope = torch.NewDisposeScope();
                    var clock = Stopwatch.StartNew();
                    model.call(x);
                    times[i] = clock.Elapsed.TotalMilliseconds;
                }
                Array.Sort(times);
                return fastest ? times[0] : times[runs / 2];
            }
        }
    }
}
