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

        /// <summary>libtorch's own message without "Exception raised from …" and the native frames.</summary>
        public static string FirstLine(string message)
        {
            var line = message.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0) ?? message;
            int raised = line.IndexOf("Exception raised from", StringComparison.Ordinal);
            return (raised > 0 ? line.Substring(0, raised) : line).Trim();
        }
    }
}
