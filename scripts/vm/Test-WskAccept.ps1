<#
.SYNOPSIS
  Smoke test of an installed wskaccept driver (under Driver Verifier): for each accept mode start
  a listener with wskctl, hold connections with .NET TcpClient, check stats and list through
  `wskctl --json`, close one connection by id, hit the capacity limit and see the rejections
  counted, disable the device with connections open (unload must not hang), re-enable, uninstall.
  Prints PASS/FAIL per step; exits non-zero on any failure.
.PARAMETER Wskctl
  Path to wskctl.exe (cargo build --release -p wskctl).
#>
[CmdletBinding()]
param(
    [string]$Wskctl = '.\target\release\wskctl.exe',
    [string]$Package,
    [int]$Connections = 20
)
$ErrorActionPreference = 'Stop'
$HardwareId = 'Root\WskAccept'
$script:Failures = 0

function Step([string]$Name, [scriptblock]$Body) {
    try {
        & $Body
        Write-Host "PASS  $Name" -ForegroundColor Green
    } catch {
        $script:Failures++
        Write-Host "FAIL  $Name : $($_.Exception.Message)" -ForegroundColor Red
    }
}

function Ctl([string[]]$Arguments) {
    $out = & $Wskctl @Arguments --json
    if ($LASTEXITCODE -ne 0) { throw "wskctl $($Arguments -join ' ') exited $LASTEXITCODE" }
    return ($out | ConvertFrom-Json)
}

function Connect-Clients([string]$Address, [int]$Count) {
    $hostPart, $port = $Address -split ':(?=\d+$)'
    $hostPart = $hostPart.Trim('[', ']')
    1..$Count | ForEach-Object {
        $client = [System.Net.Sockets.TcpClient]::new()
        $client.Connect($hostPart, [int]$port)
        $client
    }
}

function Wait-Until([scriptblock]$Condition, [int]$Seconds = 10) {
    $deadline = (Get-Date).AddSeconds($Seconds)
    while (-not (& $Condition)) {
        if ((Get-Date) -gt $deadline) { throw 'timed out' }
        Start-Sleep -Milliseconds 100
    }
}

Step 'driver answers' { $v = Ctl @('version'); if ($v.protocol -ne 1) { throw "protocol $($v.protocol)" } }

foreach ($mode in 'irp', 'event', 'both') {
    $clients = @()
    Step "${mode}: start, hold $Connections connections, stats and list" {
        $started = Ctl @('start', '--listen', '127.0.0.1:0', '--mode', $mode)
        $script:listener = $started.listener
        $script:clients = Connect-Clients $started.address $Connections
        Wait-Until { (Ctl @('stats', '--listener', $script:listener)).active -eq $Connections }
        $list = Ctl @('list', '--listener', $script:listener)
        if ($list.Count -ne $Connections) { throw "list shows $($list.Count)" }
        if ($mode -ne 'both' -and ($list | Where-Object { $_.path -ne $mode })) { throw 'wrong accept path' }
    }
    Step "${mode}: close one connection by id" {
        $id = (Ctl @('list', '--listener', $script:listener))[0].id
        & $Wskctl close $id | Out-Null
        Wait-Until { (Ctl @('stats', '--listener', $script:listener)).active -eq ($Connections - 1) }
    }
    Step "${mode}: stop with connections open" {
        Ctl @('stop', $script:listener) | Out-Null
        if ((Ctl @('stats')).active -ne 0) { throw 'connections left after stop' }
    }
    $script:clients | ForEach-Object { $_.Dispose() }
}

Step 'capacity limit: refusals are counted' {
    $before = (Ctl @('stats')).rejected_full
    $started = Ctl @('start', '--listen', '127.0.0.1:0', '--capacity', '5')
    $script:held = Connect-Clients $started.address 8
    Wait-Until { (Ctl @('stats')).rejected_full - $before -eq 3 }
    if ((Ctl @('stats', '--listener', $started.listener)).active -ne 5) { throw 'table not at capacity' }
}

Step 'disable the device with connections open (unload must not hang)' {
    $device = Get-PnpDevice | Where-Object { $_.HardwareID -contains $HardwareId } | Select-Object -First 1
    $job = Start-Job { param($id) pnputil /disable-device $id } -ArgumentList $device.InstanceId
    if (-not (Wait-Job $job -Timeout 30)) { throw 'disable did not finish within 30 s' }
    $script:device = $device
}
$script:held | ForEach-Object { $_.Dispose() }

Step 're-enable the device' {
    pnputil /enable-device $script:device.InstanceId | Out-Null
    Wait-Until { & $Wskctl version | Out-Null; $LASTEXITCODE -eq 0 } 30
}

if ($Package) {
    Step 'uninstall' { & (Join-Path $PSScriptRoot 'Uninstall-WskAccept.ps1') }
}

if ($script:Failures -gt 0) {
    Write-Host "$script:Failures step(s) failed." -ForegroundColor Red
    exit 1
}
Write-Host 'All steps passed.' -ForegroundColor Green
exit 0
