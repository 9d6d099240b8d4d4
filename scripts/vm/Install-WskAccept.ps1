<#
.SYNOPSIS
  Installs the wskaccept driver package built by `cargo make` on a test-signing VM: trusts the
  package's test certificate, adds the driver to the store, creates the root-enumerated device
  (Root\WskAccept) with devgen, and waits for the device interface wskctl opens.
.PARAMETER Package
  The package folder (target\<profile>\wskaccept_package).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$Package,
    [int]$TimeoutSeconds = 60
)
$ErrorActionPreference = 'Stop'
$HardwareId = 'Root\WskAccept'
$InterfaceGuid = '{BB1809E0-F9BF-4BE8-AEEB-4C299BA43A18}'

$inf = Join-Path $Package 'wskaccept.inf'
$cer = Get-ChildItem -Path $Package -Filter *.cer | Select-Object -First 1
if (-not (Test-Path $inf)) { throw "No wskaccept.inf in $Package (run cargo make first)." }
if (-not $cer) { throw "No test certificate (.cer) in $Package." }

foreach ($store in 'Root', 'TrustedPublisher') {
    Import-Certificate -FilePath $cer.FullName -CertStoreLocation "Cert:\LocalMachine\$store" | Out-Null
    Write-Host "Trusted $($cer.Name) in LocalMachine\$store."
}

pnputil /add-driver $inf /install
if ($LASTEXITCODE -ne 0 -and $LASTEXITCODE -ne 259) { throw "pnputil /add-driver failed ($LASTEXITCODE)." }

# devgen ships with the WDK tools (Tools\<version>\<arch>\devgen.exe).
$existing = Get-PnpDevice -ErrorAction SilentlyContinue | Where-Object { $_.HardwareID -contains $HardwareId }
if (-not $existing) {
    devgen /add /bus ROOT /hardwareid $HardwareId
    if ($LASTEXITCODE -ne 0) { throw "devgen failed ($LASTEXITCODE)." }
    pnputil /scan-devices | Out-Null
}

$deadline = (Get-Date).AddSeconds($TimeoutSeconds)
do {
    $interfaces = pnputil /enum-interfaces /class $InterfaceGuid /enabled 2>$null
    if ($interfaces -match 'Interface Path') {
        Write-Host "wskaccept is installed; its device interface $InterfaceGuid is enabled."
        exit 0
    }
    Start-Sleep -Seconds 1
} while ((Get-Date) -lt $deadline)
throw "The device interface $InterfaceGuid did not appear within $TimeoutSeconds s (check Device Manager and setupapi.dev.log)."
