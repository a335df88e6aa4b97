using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// Turns a libtorch error that escaped a training or evaluation step into one actionable line: what failed,
    /// in which layer (or the loss), at which step. libtorch's message carries ~20 native stack frames after its
    /// first line; those are shown only with <c>MODELDSL_TRACE=1</c> (through the inner exception).
    /// </summary>
    internal static class StepFailure
    {
        /// <summary>Whether <paramref name="e"/> is an error raised inside libtorch.</summary>
        public static bool IsNative(Exception e) => e is ExternalException;

        /// <summary>
        /// Explains <paramref name="error"/> thrown while stepping on <paramref name="x"/>: replays the forward pass
        /// under no-grad with a hook on every layer to find the one that fails; if none does, the loss failed.
        /// </summary>
        public static TrainingException Explain(Exception error, nn.Module<Tensor, Tensor> model, Tensor x, Loss loss, string where, string? lossMethod = null)
        {
            // A pruned layer run through .forward keeps computing with the product of its mask and weight from before
            // the last optimiser step: the next backward goes through a freed graph ("backward through the graph a
            // second time"). Neither the loss nor the data is at fault, so say what is.
            var bypassed = PrunedLayersNotCalled(model, x);
            if (bypassed.Count > 0)
            {
                string names = string.Join(", ", bypassed.Select(n => $"'{n}'"));
                return new TrainingException(
                    $"{where} failed: {FirstLine(error.Message)} (the pruned layer{(bypassed.Count > 1 ? "s" : "")} {names} ran through .forward(x), " +
                    "which skips the pruning hook that recomputes weight = weight_mask * weight_orig before each call; " +
                    "call layers with .call(x) in the hand-written forward (warning MD0017))", TrainingHost.UsageError, error);
            }

            string? layer = FailingLayer(model, x);
            string stage = layer is not null ? $"in layer '{layer}'" : lossMethod is not null ? $"in the [Loss] method {lossMethod}" : $"in the {loss} loss";
            string hint = layer is not null
                ? "the layer rejected its input; check the model's Summary against the data"
                : lossMethod is not null
                    ? $"the method was given the model's output and the targets as Loss.{loss} loads them; check its tensor operations against their shapes"
                    : $"the model's output does not suit {loss} with these targets; check the [Train] loss and the labels";
            return new TrainingException($"{where} failed {stage}: {FirstLine(error.Message)} ({hint})", TrainingHost.UsageError, error);
        }

        private static string? FailingLayer(nn.Module<Tensor, Tensor> model, Tensor x)
        {
            var entered = new Stack<string>();
            string? failing = null;
            var removers = new List<Action>();
            try
            {
                foreach (var (name, child) in model.named_children())
                {
                    if (child is not nn.Module<Tensor, Tensor> layer) continue;
                    var pre = layer.register_forward_pre_hook((_, input) => { entered.Push(name); return input; });
                    var post = layer.register_forward_hook((_, _, output) => { entered.Pop(); return output; });
                    removers.Add(() => { pre.remove(); post.remove(); });
                }
                using var noGrad = no_grad();
                using var scope = NewDisposeScope();
                model.call(x);
            }
            catch (Exception e) when (IsNative(e))
            {
                failing = entered.Count > 0 ? entered.Peek() : "(forward)";
            }
            finally
            {
                foreach (var remove in removers) remove();
            }
            return failing;
        }

        /// <summary>
        /// The pruned sub-modules whose forward pre-hooks do not run when the model runs on <paramref name="x"/>: they
        /// are called through <c>forward</c> (which skips hooks), or not at all. Empty when nothing is pruned.
        /// </summary>
        private static List<string> PrunedLayersNotCalled(nn.Module<Tensor, Tensor> model, Tensor x)
        {
            var pruned = model.named_modules()
                .Where(m => m.module is nn.Module<Tensor, Tensor> && Pruning.Prune.PrunedParameters(m.module).Count > 0)
                .Select(m => (m.name, Module: (nn.Module<Tensor, Tensor>)m.module)).ToList();
            if (pruned.Count == 0) return new List<string>();
            var called = new HashSet<string>();
            var removers = new List<Action>();
            try
            {
                foreach (var (name, module) in pruned)
                {
                    var hook = module.register_forward_pre_hook((_, input) => { called.Add(name); return input; });
                    removers.Add(hook.remove);
                }
                using var noGrad = no_grad();
                using var scope = NewDisposeScope();
                model.call(x);
            }
            catch (Exception e) when (IsNative(e))
            {
                // The replay failed too: the layers after the failing one were never reached, which proves nothing about
                // .forward; only a forward that completes shows a pruned layer was bypassed. FailingLayer names the real one.
                return new List<string>();
            }
            finally
            {
                foreach (var remove in removers) remove();
            }
            return pruned.Select(p => p.name).Where(n => !called.Contains(n)).ToList();
        }

        /// <summary>libtorch's own message without "Exception raised from …" and the native frames.</summary>
        public static string FirstLine(string message)
        {
            var line = message.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0) ?? message;
            int raised = line.IndexOf("Exception raised from", StringComparison.Ordinal);
            return (raised > 0 ? line.Substring(0, raised) : line).Trim();
        }
    }
}
