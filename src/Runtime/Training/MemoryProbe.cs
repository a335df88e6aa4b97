using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text.Json.Serialization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// Measures what one rank holds at a training step (the report's <c>memory.measured</c>): the bytes of its parameter,
    /// gradient and optimiser-state tensors, counted from the tensors themselves after the step (with the strategy's
    /// synchronisation and the parameters' all-gather done), and the activations as the bytes libtorch allocated in the
    /// forward pass and the loss and still held when backward starts — the heap in use (glibc's <c>mallinfo2</c>:
    /// libtorch's CPU allocator takes its memory from malloc) just before the forward and just after the loss. Every
    /// tensor a TorchSharp forward creates stays referenced until the step's dispose scope ends, so that difference is
    /// every layer output and everything autograd saved for backward.
    /// </summary>
    public sealed class MemoryProbe
    {
        /// <summary>The steps measured: the last of them wins (the first one's forward may still set up kernels).</summary>
        public const int MeasuredSteps = 2;

        private long _heapBefore;

        /// <summary>Whether the step about to run is measured.</summary>
        public bool Armed { get; set; }

        /// <summary>The measured figures so far (null before the first measured step).</summary>
        public MemoryFigures? Measured { get; private set; }

        private long? _activations;

        /// <summary>Before the forward of a measured step.</summary>
        public void BeforeForward()
        {
            if (Armed && HeapInUse() is { } heap) _heapBefore = heap;
        }

        /// <summary>After the loss of a measured step, before backward: from here its backward's recomputed blocks are measured too.</summary>
        public void AfterLoss()
        {
            if (Armed && HeapInUse() is { } heap)
            {
                _activations = heap - _heapBefore;
                _largestRecompute = 0;
                Recording = this;
            }
        }

        /// <summary>
        /// The probe of the step whose backward is running, while it measures (<see cref="BlockRecompute"/> reports each
        /// recomputed block's internals to it); null otherwise.
        /// </summary>
        internal static MemoryProbe? Recording { get; private set; }

        private long _largestRecompute;

        /// <summary>After the backward of a measured step: recomputed blocks are no longer this step's.</summary>
        public void AfterBackward()
        {
            if (ReferenceEquals(Recording, this)) Recording = null;
        }

        /// <summary>
        /// A block recomputed in backward allocated <paramref name="bytes"/> for its forward: the activations a step holds
        /// at most are those kept after the loss plus the largest of these (one block's internals at a time).
        /// </summary>
        internal void RecomputedBlock(long bytes) => _largestRecompute = Math.Max(_largestRecompute, bytes);

        /// <summary>
        /// After a measured step (the optimiser stepped, the strategy synchronised): the model-state tensors. In bf16 mixed
        /// precision (<paramref name="precision"/> a <see cref="MixedPrecision.BFloat16Training"/>) they are counted as ZeRO
        /// accounts them: <c>parameters</c> the working copy's weights (those forward runs on), <c>gradients</c> the working
        /// copy's and the master's gradients, <c>optimizer_state</c> the optimiser's tensors plus the float32 master weights.
        /// </summary>
        public void AfterStep(nn.Module model, OptimizerHelper optimizer, MixedPrecision.ITrainingPrecision? precision = null)
        {
            if (!Armed) return;
            var parameters = Distinct(model.parameters()).ToList();
            bool mixed = precision is MixedPrecision.BFloat16Training;
            var weights = precision is MixedPrecision.BFloat16Training bf16 ? Distinct(bf16.Module.parameters()).ToList() : parameters;
            long masterBytes = mixed ? parameters.Sum(Bytes) : 0;
            long gradients = 0;
            foreach (var p in mixed ? weights.Concat(parameters) : parameters)
            {
                using var grad = p.grad;
                if (grad is not null) gradients += Bytes(grad);
            }
            Measured = new MemoryFigures
            {
                Parameters = weights.Sum(Bytes),
                Gradients = gradients,
                OptimizerState = OptimizerStateBytes(optimizer) + masterBytes,
                Activations = _activations + _largestRecompute,
            };
        }

        /// <summary>
        /// The report's <c>memory</c> section for this rank: the plan at the run's settings (null when the compiler could
        /// not know the model's shapes) and what was measured, with <c>peak_rss</c> read at the end of training.
        /// </summary>
        public MemoryReport Report(TrainingPlan plan, int rank, int worldSize)
        {
            var shard = plan.Mode == ParallelMode.Sync && worldSize > 1 ? plan.Shard : ShardLevel.None;
            var precision = RunPrecision(plan);
            MemoryFigures? planned = null;
            if (plan.Memory is { } model)
            {
                var b = MemoryPlan.For(model, plan.Optimizer, plan.Momentum, precision, shard, worldSize, plan.BatchSize, rank, plan.Recompute == Recompute.Blocks);
                planned = new MemoryFigures
                {
                    Parameters = b.Parameters, Gradients = b.Gradients, OptimizerState = b.OptimizerState, Activations = b.Activations, Total = b.Total,
                };
            }
            var measured = Measured ?? new MemoryFigures();
            measured.Total = measured.Parameters + measured.Gradients + measured.OptimizerState + (measured.Activations ?? 0);
            measured.PeakRss = PeakRss();
            return new MemoryReport
            {
                Shard = MemoryPlan.ShardName(shard),
                Precision = MemoryPlan.PrecisionName(precision),
                Rank = rank,
                BatchSize = plan.BatchSize,
                BudgetMB = plan.MemoryBudgetMB > 0 ? plan.MemoryBudgetMB : null,
                Planned = planned,
                Measured = measured,
            };
        }

        /// <summary>The precision the run trains in, as the plan says (the trainer passes fp32 where bf16 fell back).</summary>
        public static MemoryPrecision RunPrecision(TrainingPlan plan) =>
            plan.Precision == Precision.BFloat16 ? MemoryPrecision.BFloat16 : MemoryPrecision.Float32;

        /// <summary>Bytes of the optimiser's state tensors (momentum buffers, Adam's moments; an emptied shard counts 0).</summary>
        public static long OptimizerStateBytes(OptimizerHelper optimizer)
        {
            ArgumentNullException.ThrowIfNull(optimizer);
            return optimizer.state_dict().State.Sum(StateBytes);
        }

        /// <summary>Bytes of one parameter's optimiser state: every tensor field of TorchSharp's state object.</summary>
        public static long StateBytes(OptimizerState state) =>
            state.GetType().GetFields().Where(f => f.FieldType == typeof(Tensor))
                .Select(f => f.GetValue(state) as Tensor).Where(t => t is not null && !t.IsInvalid).Sum(t => Bytes(t!));

        /// <summary>The heap bytes in use (glibc's <c>mallinfo2</c>: arena chunks in use plus mmapped blocks), or null where unavailable.</summary>
        public static long? HeapInUse()
        {
            if (!OperatingSystem.IsLinux() || !_mallinfoAvailable) return null;
            try
            {
                var info = mallinfo2();
                return (long)(info.uordblks + info.hblkhd);
            }
            catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
            {
                _mallinfoAvailable = false;
                return null;
            }
        }

        /// <summary>The process's peak resident set (VmHWM of /proc/self/status) in bytes, or null where unavailable.</summary>
        public static long? PeakRss()
        {
            try
            {
                foreach (var line in File.ReadLines("/proc/self/status"))
                    if (line.StartsWith("VmHWM:", StringComparison.Ordinal)
                        && long.TryParse(line["VmHWM:".Length..].Replace("kB", "", StringComparison.Ordinal).Trim(), out long kb))
                        return kb * 1024;
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
            return null;
        }

        private static long Bytes(Tensor t) => t.numel() * t.element_size();

        private static IEnumerable<Parameter> Distinct(IEnumerable<Parameter> parameters)
        {
            var seen = new HashSet<IntPtr>();
            return parameters.Where(p => seen.Add(p.Handle));
        }

        private static bool _mallinfoAvailable = true;

        [StructLayout(LayoutKind.Sequential)]
        private struct MallInfo2
        {
            public nuint arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost;
        }

        [DllImport("libc", EntryPoint = "mallinfo2")]
        private static extern MallInfo2 mallinfo2();
    }

    /// <summary>The report's <c>memory</c> section: one rank's planned and measured bytes.</summary>
    public sealed class MemoryReport
    {
        /// <summary>The shard level the run trained at: none, optimizer-state, gradients, parameters.</summary>
        [JsonPropertyName("shard")] public string Shard { get; set; } = "none";
        /// <summary>fp32 or bf16.</summary>
        [JsonPropertyName("precision")] public string Precision { get; set; } = "fp32";
        /// <summary>The rank these figures are of (the report is rank 0's).</summary>
        [JsonPropertyName("rank")] public int Rank { get; set; }
        /// <summary>Samples per micro-batch on this rank, which the activations are planned for.</summary>
        [JsonPropertyName("batch_size")] public int BatchSize { get; set; }
        /// <summary>The declared MemoryBudgetMB, if any.</summary>
        [JsonPropertyName("budget_mb"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public double? BudgetMB { get; set; }
        /// <summary>The compiler's plan at the run's settings; null when the model's shapes were unknown at compile time.</summary>
        [JsonPropertyName("planned")] public MemoryFigures? Planned { get; set; }
        /// <summary>What the rank held at its measured step.</summary>
        [JsonPropertyName("measured")] public MemoryFigures Measured { get; set; } = new();
    }

    /// <summary>Bytes by kind, per rank.</summary>
    public sealed class MemoryFigures
    {
        /// <summary>Parameter tensors.</summary>
        [JsonPropertyName("parameters")] public long Parameters { get; set; }
        /// <summary>Gradient tensors.</summary>
        [JsonPropertyName("gradients")] public long Gradients { get; set; }
        /// <summary>Optimiser state tensors.</summary>
        [JsonPropertyName("optimizer_state")] public long OptimizerState { get; set; }
        /// <summary>Activations kept for backward (measured: null where the heap cannot be read).</summary>
        [JsonPropertyName("activations")] public long? Activations { get; set; }
        /// <summary>The sum of the four.</summary>
        [JsonPropertyName("total")] public long Total { get; set; }
        /// <summary>Measured only: the process's peak resident set at the end of training.</summary>
        [JsonPropertyName("peak_rss"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public long? PeakRss { get; set; }
    }
}
