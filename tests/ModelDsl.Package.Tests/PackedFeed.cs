using System.IO;

namespace ModelDsl.Package.Tests;

/// <summary>
/// A local NuGet feed (a temp folder) holding ModelDsl, ModelDsl.Templates and ModelDsl.Testing packed from this checkout, under a version
/// no other run uses, so a restore can never pick up a stale package from the machine's global package cache; the
/// consumers still reuse that cache for TorchSharp and libtorch. Removed, with its cache entries, afterwards.
/// </summary>
public sealed class PackedFeed : IDisposable
{
    public PackedFeed()
    {
        Root = Path.Combine(Path.GetTempPath(), "modeldsl-package-tests-" + Guid.NewGuid().ToString("N")[..8]);
        Feed = Path.Combine(Root, "feed");
        Directory.CreateDirectory(Feed);
        Version = "0.0.0-test." + DateTime.UtcNow.ToString("yyyyMMddHHmmss") + "." + Guid.NewGuid().ToString("N")[..6];

        // The configuration the test project was built in is the one its project references (the packages' inputs)
        // were built in: pack those outputs, do not rebuild them.
        string configuration = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Parent!.Name; // bin/<configuration>/net10.0
        foreach (var project in new[] { "src/Package/ModelDsl.Package.csproj", "src/Templates/ModelDsl.Templates.csproj", "src/Testing/ModelDsl.Testing.csproj" })
        {
            var pack = Dotnet.Run(Dotnet.RepoRoot(), "pack", project, "-c", configuration, "--no-build",
                "-p:PackageVersion=" + Version, "-o", Feed);
            if (pack.ExitCode != 0)
            {
                Dispose(); // xunit does not dispose a fixture whose constructor threw
                throw new InvalidOperationException("dotnet pack " + project + " failed:\n" + pack);
            }
        }
    }

    public string Root { get; }
    public string Feed { get; }
    public string Version { get; }

    public string PackagePath(string id) => Path.Combine(Feed, $"{id}.{Version}.nupkg");

    /// <summary>A new empty project folder whose nuget.config adds the feed to the machine's sources.</summary>
    public string NewProjectFolder(string name)
    {
        var dir = Path.Combine(Root, name);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <add key="modeldsl-local" value="{Feed}" />
              </packageSources>
            </configuration>
            """);
        return dir;
    }

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        string cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        foreach (var id in new[] { "modeldsl", "modeldsl.templates", "modeldsl.testing" })
        {
            var entry = Path.Combine(cache, id, Version.ToLowerInvariant());
            try { if (Directory.Exists(entry)) Directory.Delete(entry, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
