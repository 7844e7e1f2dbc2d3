#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Enable WinRM over HTTPS on this Windows host, for provider-fallback's deploy (docs/windows.md:
    "Enable WinRM over HTTPS on the Windows host"). The GitHub Actions Windows job runs this
    same script.

.DESCRIPTION
    1. A self-signed certificate for the names the controller will use (one from your CA is
       better: pass its thumbprint instead with -Thumbprint).
    2. The WinRM service, and an HTTPS listener (port 5986) with that certificate.
    3. No Basic authentication, nothing unencrypted, and no plain-HTTP listener.
    4. Port 5986 allowed in, on private networks only.
    5. The certificate exported (DER) for the controller to trust.

    Enable-PSRemoting sets LocalAccountTokenFilterPolicy=1 on client editions of Windows: every
    local administrator's remote logon is then elevated (see docs/windows.md).

.PARAMETER DnsName
    The names in the certificate: the host's DNS name, its computer name and localhost by
    default (localhost serves WSL's mirrored networking).

.PARAMETER CertificateFile
    Where the certificate is exported (default: winrm-<COMPUTERNAME>.cer in your profile).

.NOTES
    Exit codes: 0 done (the last line is the exported file); 1 error.
#>
[CmdletBinding()]
param(
    [string[]]$DnsName = @(
        [System.Net.Dns]::GetHostEntry($env:COMPUTERNAME).HostName,
        $env:COMPUTERNAME,
        'localhost'
    ),
    [string]$Thumbprint = '',
    [string]$CertificateFile = (Join-Path $env:USERPROFILE ('winrm-{0}.cer' -f $env:COMPUTERNAME))
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

trap {
    $host.UI.WriteErrorLine(('enable-winrm-https: {0}' -f $_.Exception.Message))
    exit 1
}

# 1. The certificate.
if ($Thumbprint -eq '') {
    $names = @($DnsName | Where-Object { $_ } | Sort-Object -Unique)
    $cert = New-SelfSignedCertificate -DnsName $names -CertStoreLocation Cert:\LocalMachine\My `
        -KeyExportPolicy NonExportable -NotAfter (Get-Date).AddYears(2)
} else {
    $cert = Get-Item -LiteralPath ('Cert:\LocalMachine\My\{0}' -f $Thumbprint)
}

# 2. The WinRM service, and an HTTPS listener with that certificate.
Enable-PSRemoting -SkipNetworkProfileCheck -Force
Get-ChildItem WSMan:\localhost\Listener |
    Where-Object { $_.Keys -contains 'Transport=HTTPS' } | Remove-Item -Recurse
New-Item -Path WSMan:\localhost\Listener -Transport HTTPS -Address * `
    -CertificateThumbPrint $cert.Thumbprint -Force | Out-Null

# 3. No Basic authentication, nothing unencrypted, and no plain-HTTP listener.
Set-Item WSMan:\localhost\Service\Auth\Basic $false
Set-Item WSMan:\localhost\Service\AllowUnencrypted $false
Get-ChildItem WSMan:\localhost\Listener |
    Where-Object { $_.Keys -contains 'Transport=HTTP' } | Remove-Item -Recurse

# 4. Let 5986 in, on private networks only (narrow -RemoteAddress to your WSL subnet if you like).
if ($null -eq (Get-NetFirewallRule -Name 'WinRM-HTTPS-In' -ErrorAction SilentlyContinue)) {
    New-NetFirewallRule -Name 'WinRM-HTTPS-In' -DisplayName 'WinRM over HTTPS' -Direction Inbound `
        -Protocol TCP -LocalPort 5986 -Action Allow -Profile Private | Out-Null
}

# 5. The certificate for the controller to trust.
Export-Certificate -Cert $cert -FilePath $CertificateFile | Out-Null
Write-Output $CertificateFile
exit 0
