<#
.SYNOPSIS
  Prepares a test VM for wskaccept: test signing on, Driver Verifier (standard flags) on
  wskaccept.sys, full memory dumps. Run as Administrator. Says when a reboot is needed.
  Written for Windows 10/11 and Server 2019+; not yet run by the wskaccept authors (see README).
#>
[CmdletBinding()]
param([switch]$Reboot)
$ErrorActionPreference = 'Stop'

function Assert-Admin {
    $principal = [Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()
    if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
        throw 'Run this script as Administrator.'
    }
}
Assert-Admin
$needReboot = $false

$testSigning = (bcdedit /enum '{current}') -match 'testsigning\s+Yes'
if (-not $testSigning) {
    bcdedit /set testsigning on | Out-Null
    Write-Host 'Test signing turned on.'
    $needReboot = $true
} else {
    Write-Host 'Test signing already on.'
}

# Driver Verifier with the standard rule set, for wskaccept.sys only.
$verified = (verifier /querysettings) -match 'wskaccept\.sys'
if (-not $verified) {
    verifier /standard /driver wskaccept.sys | Out-Null
    Write-Host 'Driver Verifier (/standard) set for wskaccept.sys.'
    $needReboot = $true
} else {
    Write-Host 'Driver Verifier already covers wskaccept.sys.'
}

# Full memory dump (CrashDumpEnabled = 1) so a verifier bug check can be analysed in WinDbg.
$crash = 'HKLM:\SYSTEM\CurrentControlSet\Control\CrashControl'
if ((Get-ItemProperty $crash).CrashDumpEnabled -ne 1) {
    Set-ItemProperty $crash -Name CrashDumpEnabled -Value 1
    Write-Host 'Full memory dumps enabled.'
    $needReboot = $true
}

if ($needReboot) {
    Write-Warning 'A reboot is needed for these settings to take effect.'
    if ($Reboot) { Restart-Computer -Force }
} else {
    Write-Host 'The machine is ready; no reboot needed.'
}
