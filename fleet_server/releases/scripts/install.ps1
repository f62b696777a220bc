# ClawFleet agent installer for Windows, served by the fleet server at @FLEET_URL@/install.ps1.
#
#   powershell -ExecutionPolicy Bypass -c "irm @FLEET_URL@/install.ps1 | iex"
#
# Run it in an elevated PowerShell (the agent installs per machine). It downloads the setup program,
# checks its SHA-256, installs silently (an upgrade stops the running service and tray first), asks
# for the enrollment token (not echoed; never on a command line) unless this machine is enrolled
# already, and starts the agent: the Windows service "ClawFleet Agent" (headless) and the tray at logon.
# Set $env:CLAWFLEET_DRY_RUN = "1" first to only print what it would do; $env:CLAWFLEET_REENROLL = "1"
# asks for a new token even when enrolled.
$ErrorActionPreference = "Stop"
$FleetUrl = '@FLEET_URL@'
$Offered = '@OFFERED_VERSION@'
$ExeName = '@EXE_NAME@'
$ExeSha256 = '@EXE_SHA256@'
$Dry = $env:CLAWFLEET_DRY_RUN -eq "1"
$InstallDir = Join-Path $env:ProgramFiles "ClawFleet Agent"
$Agent = Join-Path $InstallDir "clawfleet-agent.exe"
$Config = Join-Path $env:ProgramData "ClawFleet\agent.json"

function Step($text) { Write-Host "==> $text" }
if (-not $ExeName) { throw "the fleet at $FleetUrl offers no Windows agent package yet" }
$admin = ([Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()).IsInRole(
    [Security.Principal.WindowsBuiltInRole]::Administrator)
if (-not $admin -and -not $Dry) { throw "run this in an elevated PowerShell (Run as administrator)" }

$installed = $null
if (Test-Path $Agent) { $installed = ((& $Agent --version) -split " ")[1] }
$enrolled = Test-Path $Config
Write-Host "ClawFleet agent $Offered from $FleetUrl"
Write-Host ("  installed: " + $(if ($installed) { "$installed -> upgrading in place" } else { "none" }))
Write-Host ("  enrollment: " + $(if ($enrolled -and $env:CLAWFLEET_REENROLL -ne "1") { "kept ($Config)" } else { "token needed -> $Config" }))

$token = $null
if ((-not $enrolled -or $env:CLAWFLEET_REENROLL -eq "1") -and -not $Dry) {
    $secure = Read-Host "Paste the enrollment token" -AsSecureString
    $token = [Runtime.InteropServices.Marshal]::PtrToStringBSTR([Runtime.InteropServices.Marshal]::SecureStringToBSTR($secure))
    $token = ($token -replace "\s", "")
    if (-not $token.StartsWith("cfe1.")) { throw "that is not an enrollment token (it starts with cfe1.)" }
}

$tmp = Join-Path ([IO.Path]::GetTempPath()) ("clawfleet-" + [guid]::NewGuid())
New-Item -ItemType Directory -Path $tmp | Out-Null
try {
    $setup = Join-Path $tmp $ExeName
    Step "downloading $ExeName"
    if ($Dry) { Write-Host "would download $FleetUrl/agent/files/$ExeName" } else {
        Invoke-WebRequest -UseBasicParsing -Uri "$FleetUrl/agent/files/$ExeName" -OutFile $setup
        $got = (Get-FileHash -Algorithm SHA256 $setup).Hash.ToLower()
        if ($got -ne $ExeSha256) { throw "SHA-256 of $ExeName is $got, the fleet says $ExeSha256" }
        Write-Host "    SHA-256 ok ($ExeSha256)"
    }
    Step "installing (silent; stops a running agent first)"
    if ($Dry) { Write-Host "would run: $setup /S" } else {
        $p = Start-Process -Wait -PassThru $setup -ArgumentList "/S"
        if ($p.ExitCode -ne 0) { throw "the installer failed with exit code $($p.ExitCode)" }
        New-Item -ItemType Directory -Force -Path (Join-Path $env:ProgramData "ClawFleet\cache") | Out-Null
        Copy-Item $setup (Join-Path $env:ProgramData "ClawFleet\cache\$ExeName")  # kept for a rollback
    }
    if ($token) {
        Step "enrolling"
        $token | & $Agent enroll --system --config $Config -
        if ($LASTEXITCODE -ne 0) { throw "enrollment failed" }
        $token = $null
    }
    Step "starting the agent service"
    if ($Dry) { Write-Host "would run: $Agent install-service --system --config $Config" } else {
        & $Agent install-service --system --config $Config
        if ($LASTEXITCODE -ne 0) { throw "install-service failed" }
    }
    Write-Host "running as the Windows service 'ClawFleet Agent'; logs: $env:ProgramData\ClawFleet\Logs\agent.log"
    if ($Dry) { Write-Host "dry run: nothing was changed" }
} finally {
    Remove-Item -Recurse -Force $tmp -ErrorAction SilentlyContinue
}
