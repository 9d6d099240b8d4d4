<#
.SYNOPSIS
  Removes the wskaccept device (Root\WskAccept) and its driver package from the driver store.
#>
[CmdletBinding()]
param()
$ErrorActionPreference = 'Stop'
$HardwareId = 'Root\WskAccept'

Get-PnpDevice -ErrorAction SilentlyContinue | Where-Object { $_.HardwareID -contains $HardwareId } | ForEach-Object {
    pnputil /remove-device $_.InstanceId | Out-Null
    Write-Host "Removed device $($_.InstanceId)."
}

# Published names (oemNN.inf) of every package whose original name is wskaccept.inf.
$published = (pnputil /enum-drivers) -join "`n" -split "`n`n" |
    Where-Object { $_ -match 'Original Name:\s+wskaccept\.inf' } |
    ForEach-Object { if ($_ -match 'Published Name:\s+(oem\d+\.inf)') { $Matches[1] } }
foreach ($name in $published) {
    pnputil /delete-driver $name /uninstall /force | Out-Null
    Write-Host "Deleted driver package $name."
}
Write-Host 'wskaccept is uninstalled.'
